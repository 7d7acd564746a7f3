"""s2s backbones: GPT-2 (gpt2-chinese, CDial-GPT2); it generates through core's decoder-only
decoder (:func:`s2s.generation.decoder_for`)."""

from .config import GPT2Config
from .model import GPT2Backbone
from .openai import OpenAIGPTBackbone, OpenAIGPTConfig

__version__ = "0.1.0"

__all__ = ["GPT2Backbone", "GPT2Config", "OpenAIGPTBackbone", "OpenAIGPTConfig"]
