"""Metrics of every task: classification, spans and triples, generation."""
from .spans import span_scores, triple_scores  # noqa: F401
