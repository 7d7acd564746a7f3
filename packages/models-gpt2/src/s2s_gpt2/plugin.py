"""Registers GPT-2 with s2s."""

from s2s import hookimpl


@hookimpl
def register_backbones(register):
    from .config import SIZES
    from .model import GPT2Backbone

    register("gpt2", GPT2Backbone, sizes=SIZES, aliases=("gpt2-chinese", "cdial-gpt", "cdial-gpt2"))
