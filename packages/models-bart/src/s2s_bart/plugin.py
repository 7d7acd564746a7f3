"""Registers BART with s2s."""

from s2s import hookimpl


@hookimpl
def register_backbones(register):
    from .config import SIZES
    from .modeling import BartBackbone

    register(
        "bart", BartBackbone, sizes=SIZES, default_size="base",
        aliases=("bart-chinese", "bart-base-chinese", "fnlp/bart-base-chinese"),
    )
