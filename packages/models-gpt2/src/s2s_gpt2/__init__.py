"""s2s backbones: GPT-2 (gpt2-chinese, CDial-GPT2) with a KV-cache decoder for generation."""

from .cache import KVCache
from .config import GPT2Config
from .decoder import GPT2Decoder
from .model import GPT2Backbone
from .openai import OpenAIGPTBackbone, OpenAIGPTConfig

__version__ = "0.1.0"

__all__ = ["GPT2Backbone", "GPT2Config", "GPT2Decoder", "KVCache", "OpenAIGPTBackbone", "OpenAIGPTConfig"]
