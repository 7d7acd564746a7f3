"""The decoder LLM config, with the key names of Hugging Face ``config.json``.

One config class per variant; the variants differ only in defaults and in the few class-level
facts below (which biases exist, q/k norms, GLM's interleaved partial rotary and fused MLP, GLM-4's
post-norms). Both layouts of the rotary settings load: released hub folders write ``rope_theta``,
``rope_scaling`` and ``partial_rotary_factor`` at the top level, transformers 5 writes them inside
``rope_parameters``. Saving writes the hub layout, which transformers 4 and 5 both read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from s2s.config import Config, ConfigError

ROPE_TYPES = ("default", "linear", "llama3")
LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


@dataclass
class LlamaConfig(Config):
    """Llama 2 / 3. Defaults: transformers' ``LlamaConfig`` (the 7B shape)."""

    model_type: ClassVar[str] = "llama"
    architecture: ClassVar[str] = "LlamaForCausalLM"
    output_bias: ClassVar[bool] = True  # o_proj has a bias when attention_bias does
    qk_norm: ClassVar[bool] = False  # Qwen3: RMSNorm over each head of q and k
    glm: ClassVar[bool] = False  # GLM: interleaved partial rotary, fused gate_up_proj
    post_norms: ClassVar[bool] = False  # GLM-4-0414: norms after attention and after the MLP

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None  # None: num_attention_heads (no grouping)
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # {"rope_type": "linear" | "llama3", "factor": ..., ...}
    rope_parameters: dict | None = None  # transformers 5's layout of the three rotary settings
    partial_rotary_factor: float = 1.0  # the part of each head that rotates (GLM: 0.5)
    attention_bias: bool = False
    mlp_bias: bool = False
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False
    use_sliding_window: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    def __post_init__(self):
        self._merge_rope_parameters()
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_key_value_heads={self.num_key_value_heads} does not divide "
                f"num_attention_heads={self.num_attention_heads}: each key/value head serves a "
                f"whole group of query heads"
            )
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ConfigError(
                    f"hidden_size={self.hidden_size} is not a multiple of num_attention_heads="
                    f"{self.num_attention_heads}: state head_dim"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.hidden_act != "silu":
            raise ConfigError(f"hidden_act={self.hidden_act!r}; these models use 'silu'")
        if self.use_sliding_window:
            raise ConfigError("use_sliding_window=true: sliding-window attention is not supported")
        rope_type = self.rope_type
        if rope_type not in ROPE_TYPES:
            raise ConfigError(f"rope_scaling rope_type={rope_type!r}; supported: {', '.join(ROPE_TYPES)}")
        needed = {"linear": ("factor",), "llama3": LLAMA3_KEYS}.get(rope_type, ())
        absent = [key for key in needed if key not in (self.rope_scaling or {})]
        if absent:
            raise ConfigError(f"rope_scaling of rope_type {rope_type!r} lacks {', '.join(absent)}")
        if self.rotary_dim % 2 or not 0 < self.rotary_dim <= self.head_dim:
            raise ConfigError(
                f"partial_rotary_factor={self.partial_rotary_factor} of head_dim={self.head_dim} "
                f"gives {self.rotary_dim} rotary dimensions: need an even number in 2..head_dim"
            )

    def _merge_rope_parameters(self) -> None:
        """transformers 5's ``rope_parameters`` into the hub layout's three fields."""
        if not self.rope_parameters:
            self.rope_parameters = None
            return
        parameters = dict(self.rope_parameters)
        if any(isinstance(value, dict) for value in parameters.values()):
            raise ConfigError("rope_parameters per layer type: not supported (one set for every layer)")
        self.rope_theta = parameters.pop("rope_theta", self.rope_theta)
        self.partial_rotary_factor = parameters.pop("partial_rotary_factor", self.partial_rotary_factor)
        rope_type = parameters.get("rope_type", parameters.get("type", "default"))
        self.rope_scaling = None if rope_type == "default" else parameters
        self.rope_parameters = None

    @property
    def rope_type(self) -> str:
        scaling = self.rope_scaling or {}
        return scaling.get("rope_type", scaling.get("type", "default"))

    @property
    def rotary_dim(self) -> int:
        """How many dimensions of each head rotate (all but GLM's)."""
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def groups(self) -> int:
        """Query heads per key/value head."""
        return self.num_attention_heads // self.num_key_value_heads

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``config.json`` that transformers reads (the hub layout)."""
        values = {key: value for key, value in self.to_dict().items() if key != "rope_parameters"}
        if not self.glm:
            values.pop("partial_rotary_factor")
        return {**values, "architectures": [self.architecture]}


@dataclass
class _QwenConfig(LlamaConfig):
    """The defaults transformers' ``Qwen2Config`` and ``Qwen3Config`` share over Llama's."""

    vocab_size: int = 151936
    intermediate_size: int = 22016
    max_position_embeddings: int = 32768


@dataclass
class Qwen2Config(_QwenConfig):
    """Qwen2 / Qwen2.5: biases on q, k and v (none on o). Defaults: transformers' ``Qwen2Config``."""

    model_type: ClassVar[str] = "qwen2"
    architecture: ClassVar[str] = "Qwen2ForCausalLM"
    output_bias: ClassVar[bool] = False

    def __post_init__(self):
        self.attention_bias = True  # always, as in transformers' Qwen2 (a config.json may say otherwise)
        super().__post_init__()


@dataclass
class Qwen3Config(_QwenConfig):
    """Qwen3: per-head RMSNorm on q and k before the rotation, an explicit head_dim, no bias.
    Defaults: transformers' ``Qwen3Config``."""

    model_type: ClassVar[str] = "qwen3"
    architecture: ClassVar[str] = "Qwen3ForCausalLM"
    qk_norm: ClassVar[bool] = True

    head_dim: int | None = 128


@dataclass
class GlmConfig(LlamaConfig):
    """GLM-4 (transformers' ``glm``: glm-4-9b): half of each head rotates, in interleaved pairs;
    q/k/v biases; gate and up projections fused in ``gate_up_proj``."""

    model_type: ClassVar[str] = "glm"
    architecture: ClassVar[str] = "GlmForCausalLM"
    glm: ClassVar[bool] = True
    output_bias: ClassVar[bool] = False

    vocab_size: int = 151552
    intermediate_size: int = 13696
    num_hidden_layers: int = 40
    num_key_value_heads: int | None = 2
    head_dim: int | None = 128
    max_position_embeddings: int = 131072
    rms_norm_eps: float = 1.5625e-07
    partial_rotary_factor: float = 0.5
    attention_bias: bool = True


@dataclass
class Glm4Config(GlmConfig):
    """GLM-4-0414 (transformers' ``glm4``): GLM with a norm after attention and after the MLP."""

    model_type: ClassVar[str] = "glm4"
    architecture: ClassVar[str] = "Glm4ForCausalLM"
    post_norms: ClassVar[bool] = True


# Size presets. ``tiny`` for tests and examples, ``small`` for benches (Qwen2-shaped: 7 query heads
# per key/value head), ``0.5b`` the shape of Qwen2.5-0.5B (Qwen3: of Qwen3-0.6B).
QWEN25_05B = dict(
    vocab_size=151936, hidden_size=896, num_attention_heads=14, num_key_value_heads=2, num_hidden_layers=24,
    intermediate_size=4864, tie_word_embeddings=True, rope_theta=1000000.0, max_position_embeddings=32768,
)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, head_dim=16, max_position_embeddings=512)
SMALL = dict(hidden_size=448, num_hidden_layers=6, num_attention_heads=7, num_key_value_heads=1,
             intermediate_size=1216, head_dim=64, max_position_embeddings=4096)
SIZES = {"tiny": TINY, "small": SMALL, "0.5b": {**QWEN25_05B, "head_dim": 64}}
QWEN3_SIZES = {
    **SIZES,
    "0.5b": dict(
        vocab_size=151936, hidden_size=1024, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
        num_hidden_layers=28, intermediate_size=3072, tie_word_embeddings=True, rope_theta=1000000.0,
        max_position_embeddings=40960,
    ),
}
