"""s2s backbones (bert)."""

__version__ = "0.1.0"
