"""Registers the decoder LLMs with s2s: one implementation, a backbone name per variant."""

from s2s import hookimpl


@hookimpl
def register_backbones(register):
    from .config import QWEN3_SIZES, SIZES
    from .model import Glm4Backbone, GlmBackbone, LlamaBackbone, Qwen2Backbone, Qwen3Backbone

    register("llama", LlamaBackbone, sizes=SIZES)
    register("qwen2", Qwen2Backbone, sizes=SIZES, aliases=("qwen2.5",))
    register("qwen3", Qwen3Backbone, sizes=QWEN3_SIZES)
    register("glm", GlmBackbone, sizes=SIZES)
    register("glm4", Glm4Backbone, sizes=SIZES)
