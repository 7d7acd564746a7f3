"""s2s backbone: Chinese BART (fnlp/bart-base-chinese, both vocabulary releases)."""

from .config import BartConfig
from .modeling import BartBackbone, BartDecoder

__version__ = "0.1.0"

__all__ = ["BartBackbone", "BartConfig", "BartDecoder", "__version__"]
