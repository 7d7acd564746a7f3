"""s2s backbones (gpt2)."""

__version__ = "0.1.0"
