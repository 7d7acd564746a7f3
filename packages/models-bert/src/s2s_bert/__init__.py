"""s2s backbones of the BERT family: BERT, Chinese RoBERTa-wwm, NEZHA."""

from .config import BertConfig, NezhaConfig
from .modeling import BertBackbone
from .nezha import NezhaBackbone

__version__ = "0.1.0"

__all__ = ["BertBackbone", "BertConfig", "NezhaBackbone", "NezhaConfig", "__version__"]
