"""s2s backbones of the T5 family: T5 (v1.0 and v1.1), mT5 and T5-PEGASUS."""

from .config import MT5Config, T5Config
from .modeling import T5Backbone

__version__ = "0.1.0"

__all__ = ["MT5Config", "T5Backbone", "T5Config", "__version__"]
