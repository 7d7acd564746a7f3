"""s2s backbones: decoder LLMs (Llama 2 / 3, Qwen2 / 2.5, Qwen3, GLM-4) as one implementation."""

from .config import Glm4Config, GlmConfig, LlamaConfig, Qwen2Config, Qwen3Config
from .model import Glm4Backbone, GlmBackbone, LlamaBackbone, Qwen2Backbone, Qwen3Backbone

__version__ = "0.1.0"

__all__ = [
    "Glm4Backbone", "Glm4Config", "GlmBackbone", "GlmConfig", "LlamaBackbone", "LlamaConfig", "Qwen2Backbone", "Qwen2Config",
    "Qwen3Backbone", "Qwen3Config",
]
