"""Registers this package's backbones with s2s: bert, roberta (RoBERTa-wwm), nezha, roformer."""

from s2s import hookimpl

from .config import SIZES


@hookimpl
def register_backbones(register):
    from .modeling import BertBackbone
    from .nezha import NezhaBackbone
    from .roformer import RoFormerBackbone

    register("bert", BertBackbone, sizes=SIZES, aliases=("bert-chinese", "bert-base-chinese"))
    # Chinese RoBERTa-wwm(-ext) is the BERT architecture with BERT's vocabulary and config.
    register(
        "roberta",
        BertBackbone,
        sizes=SIZES,
        aliases=("roberta-wwm", "roberta-wwm-ext", "chinese-roberta-wwm-ext", "chinese-roberta-wwm"),
    )
    register("nezha", NezhaBackbone, sizes=SIZES, aliases=("nezha-cn", "nezha-chinese"))
    # RoFormer-Sim (SimBERT v2) is the RoFormer architecture.
    register("roformer", RoFormerBackbone, sizes=SIZES, aliases=("roformer-sim", "roformer-chinese"))
