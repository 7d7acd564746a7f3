"""Configs of the T5 family, with Hugging Face ``config.json`` key names (``d_model``, ``d_kv``, …)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from s2s.config import Config, ConfigError

FEED_FORWARDS = ("relu", "gelu", "gelu_new", "gated-gelu", "gated-gelu_new", "gated-relu", "gated-silu")


@dataclass
class T5Config(Config):
    """T5. Defaults are those of ``t5-small`` (v1.0: ReLU, LM head tied with the ``d_model**-0.5``
    rescale). ``d_model`` need not equal ``num_heads * d_kv``."""

    model_type: ClassVar[str] = "t5"
    architecture: ClassVar[str] = "T5ForConditionalGeneration"
    key_aliases: ClassVar[dict[str, str]] = {
        "hidden_size": "d_model",
        "num_attention_heads": "num_heads",
        "num_hidden_layers": "num_layers",
        "intermediate_size": "d_ff",
        "head_dim": "d_kv",
        "hidden_dropout_prob": "dropout_rate",
    }

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int | None = None  # None: num_layers
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    feed_forward_proj: str = "relu"
    tie_word_embeddings: bool = True
    pad_token_id: int = 0
    eos_token_id: int | None = 1
    decoder_start_token_id: int | None = 0

    def __post_init__(self):
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        self.check_choice("feed_forward_proj", FEED_FORWARDS)
        for name in ("d_model", "d_kv", "d_ff", "num_heads", "num_layers", "vocab_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be a positive integer")

    @property
    def gated(self) -> bool:
        """v1.1 / mT5: ``wi_0`` (activated) times ``wi_1``; v1.0: one ``wi``."""
        return self.feed_forward_proj.startswith("gated-")

    @property
    def activation(self) -> str:
        name = self.feed_forward_proj.removeprefix("gated-")
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else name  # as transformers

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``config.json`` that transformers reads."""
        return {**super().to_hf_dict(), "is_encoder_decoder": True}


@dataclass
class MT5Config(T5Config):
    """mT5 / T5 v1.1 / T5-PEGASUS: gated-GELU feed-forward, untied ``lm_head`` without rescale."""

    model_type: ClassVar[str] = "mt5"
    architecture: ClassVar[str] = "MT5ForConditionalGeneration"

    vocab_size: int = 250112
    d_ff: int = 1024
    num_layers: int = 8
    num_heads: int = 6
    feed_forward_proj: str = "gated-gelu"
    tie_word_embeddings: bool = False


# Size presets (random weights; ``tiny`` is for tests and examples). ``tiny`` keeps
# d_model != num_heads * d_kv, as t5-pegasus-small has.
_TINY = dict(d_model=48, d_kv=16, d_ff=96, num_layers=2, num_heads=4)
T5_SIZES = {
    "tiny": _TINY,
    "small": dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8),
    "base": dict(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12),
}
MT5_SIZES = {
    "tiny": _TINY,
    "small": dict(d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_heads=6),
    "base": dict(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12),
}
# T5-PEGASUS: the mT5 shapes on a ~50,000-token BERT-style word vocab. The decoder starts at
# [CLS] and stops at [SEP]: the ids come from the tokenizer, unless a config.json states them.
T5_PEGASUS_DEFAULTS = dict(vocab_size=50000, decoder_start_token_id=None, eos_token_id=None)
