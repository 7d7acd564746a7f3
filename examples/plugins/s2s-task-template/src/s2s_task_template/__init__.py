"""An example third-party s2s plugin: text regression."""

from .task import TextRegression

__all__ = ["TextRegression"]
__version__ = "0.1.0"
