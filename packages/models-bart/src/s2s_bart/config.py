"""BART config, with the key names of Hugging Face ``config.json`` (``d_model``, ``encoder_layers``, …)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from s2s.checkpoint import other_architecture
from s2s.config import Config, ConfigError

ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu", "swish", "tanh")


@dataclass
class BartConfig(Config):
    """BART. Defaults: the shape of fnlp/bart-base-chinese v1 (BERT vocab of 21,128, 512
    positions). The special ids come from the checkpoint's config (fnlp's: ``[SEP]`` = 102
    starts and ends the decoder and is forced last, ``[CLS]`` = 101 is bos, ``[PAD]`` = 0);
    without one they are unset and tasks use the vocab's ``[CLS]`` / ``[SEP]``, so a model
    trained from scratch on its own vocab needs no ids."""

    model_type: ClassVar[str] = "bart"
    architecture: ClassVar[str] = "BartForConditionalGeneration"
    key_aliases: ClassVar[dict[str, str]] = {
        "hidden_size": "d_model", "hidden_dropout_prob": "dropout", "initializer_range": "init_std",
    }

    vocab_size: int = 21128
    max_position_embeddings: int = 512
    d_model: int = 768
    encoder_layers: int = 6
    decoder_layers: int = 6
    encoder_attention_heads: int = 12
    decoder_attention_heads: int = 12
    encoder_ffn_dim: int = 3072
    decoder_ffn_dim: int = 3072
    activation_function: str = "gelu"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    init_std: float = 0.02
    scale_embedding: bool = False
    pad_token_id: int = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    decoder_start_token_id: int | None = None
    forced_eos_token_id: int | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> BartConfig:
        """As :meth:`Config.from_dict`, refusing a config that describes another architecture."""
        described = other_architecture(values, (cls.model_type,), source)
        if described:
            raise ConfigError(described)
        return super().from_dict(values, source)

    def __post_init__(self):
        for side in ("encoder", "decoder"):
            self.check_multiple("d_model", of=f"{side}_attention_heads")
        self.check_choice("activation_function", ACTIVATIONS)

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``config.json`` that transformers reads. Generation options that change the
        output (beams, n-gram bans) are not written: s2s never applies them by default."""
        return {
            **super().to_hf_dict(),
            "is_encoder_decoder": True,
            "tie_word_embeddings": True,
            "tokenizer_class": "BertTokenizer",
        }


def _both_sides(**sizes) -> dict:
    """``encoder_X`` and ``decoder_X`` for each ``X`` of ``sizes`` (the same on both sides)."""
    return {f"{side}_{name}": value for name, value in sizes.items() for side in ("encoder", "decoder")}


# Size presets. ``tiny`` and ``small`` are for tests and examples (random weights); ``base`` is the shape of
# fnlp/bart-base-chinese, ``large`` that of fnlp/bart-large-chinese.
SIZES = {
    "tiny": dict(d_model=64, **_both_sides(layers=2, attention_heads=4, ffn_dim=128)),
    "small": dict(d_model=256, **_both_sides(layers=3, attention_heads=4, ffn_dim=1024)),
    "base": dict(d_model=768, **_both_sides(layers=6, attention_heads=12, ffn_dim=3072)),
    "large": dict(d_model=1024, **_both_sides(layers=12, attention_heads=16, ffn_dim=4096)),
}

# Generation options a released config.json / generation_config.json may set that s2s does not
# apply by default (they change the output), with s2s's own default.
IGNORED_GENERATION_OPTIONS = {
    "num_beams": 1,
    "no_repeat_ngram_size": 0,
    "length_penalty": 1.0,
    "early_stopping": False,
    "repetition_penalty": 1.0,
    "min_length": 0,
    "max_length": None,
}
