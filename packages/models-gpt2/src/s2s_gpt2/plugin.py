"""Registers GPT-2 and its OpenAI GPT variant (CDial-GPT_LCCC) with s2s."""

from s2s import hookimpl


@hookimpl
def register_backbones(register):
    from .config import SIZES
    from .model import GPT2Backbone
    from .openai import OpenAIGPTBackbone

    register("gpt2", GPT2Backbone, sizes=SIZES, aliases=("gpt2-chinese", "cdial-gpt", "cdial-gpt2"))
    register("openai-gpt", OpenAIGPTBackbone, sizes=SIZES, aliases=("cdial-gpt-lccc",))
