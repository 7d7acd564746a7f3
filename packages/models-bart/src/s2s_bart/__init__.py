"""s2s backbone: Chinese BART (fnlp/bart-base-chinese, both vocabulary releases)."""

from .config import BartConfig
from .modeling import BartBackbone

__version__ = "0.1.0"

__all__ = ["BartBackbone", "BartConfig", "__version__"]
