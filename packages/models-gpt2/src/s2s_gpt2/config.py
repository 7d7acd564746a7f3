"""GPT-2 config, with the key names of Hugging Face ``config.json`` (``n_embd``, ``n_layer``, …)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from s2s.config import Config


@dataclass
class GPT2Config(Config):
    """GPT-2. Defaults: the 12-layer, 768-wide model of gpt2-chinese and CDial-GPT2 (BERT vocab)."""

    model_type: ClassVar[str] = "gpt2"
    architecture: ClassVar[str] = "GPT2LMHeadModel"
    post_norm: ClassVar[bool] = False  # True: each sub-layer's residual sum normalised, no ln_f (OpenAI GPT)
    key_aliases: ClassVar[dict[str, str]] = {
        "hidden_size": "n_embd",
        "num_hidden_layers": "n_layer",
        "num_attention_heads": "n_head",
        "max_position_embeddings": "n_positions",
        "intermediate_size": "n_inner",
        "hidden_dropout_prob": "resid_pdrop",
    }

    vocab_size: int = 21128
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # None: 4 * n_embd
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    scale_attn_weights: bool = True

    def __post_init__(self):
        self.check_multiple("n_embd", of="n_head")
        self.check_choice("activation_function", ACTIVATIONS)

    @property
    def inner_size(self) -> int:
        return self.n_inner or 4 * self.n_embd


ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu", "relu")

# Size presets. ``tiny`` is for tests and examples (random weights); ``small`` is the 6-layer
# shape of uer/gpt2-distil-chinese-cluecorpussmall; ``base`` that of gpt2-chinese / CDial-GPT2.
SIZES = {
    "tiny": dict(n_embd=64, n_layer=2, n_head=4),
    "small": dict(n_embd=768, n_layer=6, n_head=12),
    "base": dict(n_embd=768, n_layer=12, n_head=12),
    "medium": dict(n_embd=1024, n_layer=24, n_head=16),
    "large": dict(n_embd=1280, n_layer=36, n_head=20),
}
