"""Registers this package's backbones with s2s: t5, mt5, t5-pegasus."""

from s2s import hookimpl

from .config import MT5_SIZES, T5_PEGASUS_DEFAULTS, T5_SIZES


@hookimpl
def register_backbones(register):
    from .modeling import MT5Backbone, T5Backbone

    register("t5", T5Backbone, sizes=T5_SIZES, default_size="small", aliases=("t5-v1.0",))
    register("mt5", MT5Backbone, sizes=MT5_SIZES, default_size="small", aliases=("t5-v1.1", "t5-v1_1"))
    register(
        "t5-pegasus",
        MT5Backbone,
        sizes=MT5_SIZES,
        default_size="base",
        aliases=("t5_pegasus", "chinese_t5_pegasus_base", "chinese-t5-pegasus-base", "t5-pegasus-chinese"),
        **T5_PEGASUS_DEFAULTS,
    )
