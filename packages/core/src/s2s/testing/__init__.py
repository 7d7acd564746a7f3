"""Helpers for testing s2s and its plugins: a toy encoder-decoder backbone."""
