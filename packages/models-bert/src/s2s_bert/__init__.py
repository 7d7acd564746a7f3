"""s2s backbones of the BERT family: BERT, Chinese RoBERTa-wwm, NEZHA, RoFormer."""

from .config import BertConfig, NezhaConfig
from .modeling import BertBackbone
from .nezha import NezhaBackbone
from .roformer import RoFormerBackbone, RoFormerConfig

__version__ = "0.1.0"

__all__ = ["BertBackbone", "BertConfig", "NezhaBackbone", "NezhaConfig", "RoFormerBackbone", "RoFormerConfig", "__version__"]
