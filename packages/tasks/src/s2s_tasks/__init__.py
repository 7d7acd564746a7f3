"""s2s tasks."""

__version__ = "0.1.0"
