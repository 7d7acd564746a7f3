"""Configs of the BERT family, with Hugging Face ``config.json`` key names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from s2s.config import Config

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")


@dataclass
class BertConfig(Config):
    """BERT / Chinese RoBERTa-wwm. Defaults are those of ``bert-base-chinese``."""

    model_type: ClassVar[str] = "bert"
    architecture: ClassVar[str] = "BertForMaskedLM"
    key_aliases: ClassVar[dict[str, str]] = {"_attn_implementation": "attn_implementation"}

    vocab_size: int = 21128
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    # How attention is computed: "sdpa" (torch's fused kernels) or "eager" (the same
    # numbers, written out). A runtime choice: not written to a saved config.json.
    attn_implementation: str = "sdpa"

    def __post_init__(self):
        self.check_multiple("hidden_size", of="num_attention_heads")
        self.check_choice("attn_implementation", ATTN_IMPLEMENTATIONS)

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``config.json`` that transformers reads."""
        values = super().to_hf_dict()
        values.pop("attn_implementation")
        return values


@dataclass
class NezhaConfig(BertConfig):
    """NEZHA: BERT without absolute positions, with functional relative positions."""

    model_type: ClassVar[str] = "nezha"
    architecture: ClassVar[str] = "NezhaForMaskedLM"

    max_relative_position: int = 64


# Size presets. ``tiny`` and ``small`` are for examples and tests (random weights).
SIZES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}
