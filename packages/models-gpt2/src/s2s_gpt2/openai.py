"""OpenAI GPT (transformers' ``openai-gpt``, ``OpenAIGPTLMHeadModel``): the layout of
CDial-GPT_LCCC-base / -large. GPT-2's modules with each sub-layer's residual sum normalised
(post-norm) and no final norm, its embeddings named ``tokens_embed`` / ``positions_embed``, the LM
head tied to them; ``afn`` ``"gelu"`` is the tanh approximation (transformers' ``gelu_new``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from s2s.config import ConfigError

from .config import GPT2Config
from .model import GPT2Backbone

# config.json's ``afn`` -> GPT-2's ``activation_function`` of the same formula.
ACTIVATIONS = {"gelu": "gelu_new", "relu": "relu"}


@dataclass
class OpenAIGPTConfig(GPT2Config):
    """OpenAI GPT. Defaults: transformers' shape (12 layers, 768 wide, 512 positions) with the
    13,088-token vocabulary of CDial-GPT_LCCC."""

    model_type: ClassVar[str] = "openai-gpt"
    architecture: ClassVar[str] = "OpenAIGPTLMHeadModel"
    post_norm: ClassVar[bool] = True

    vocab_size: int = 13088
    n_positions: int = 512

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> OpenAIGPTConfig:
        """As :meth:`GPT2Config.from_dict`, reading ``afn`` as transformers reads it for this layout."""
        values = dict(values)
        afn = values.pop("afn", None)
        if afn is not None:
            if afn not in ACTIVATIONS:
                raise ConfigError(f"{source}: afn={afn!r}; supported: {', '.join(ACTIVATIONS)}")
            values["activation_function"] = ACTIVATIONS[afn]
        return super().from_dict(values, source)

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``config.json`` that transformers' ``OpenAIGPTConfig`` reads."""
        values = super().to_hf_dict()
        afn = {ours: theirs for theirs, ours in ACTIVATIONS.items()}.get(values.pop("activation_function"))
        if afn is None:
            raise ConfigError(f"activation_function={self.activation_function!r} has no OpenAI GPT afn")
        for key in ("n_inner", "scale_attn_weights"):  # fixed in this layout: 4 * n_embd, scaled
            values.pop(key)
        return {**values, "afn": afn}


class OpenAIGPTBackbone(GPT2Backbone):
    """GPT-2's backbone in the OpenAI GPT layout (see the module docstring)."""

    config_class = OpenAIGPTConfig
    hf_names: ClassVar[dict[str, str]] = {
        "transformer.tokens_embed.": "transformer.wte.",
        "transformer.positions_embed.": "transformer.wpe.",
    }
