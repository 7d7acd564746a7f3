"""Metrics of every task: classification, spans and triples, generation."""
from .classification import classification_metrics  # noqa: F401
from .generation import bleu, generation_metrics, rouge  # noqa: F401
from .spans import span_scores, triple_scores  # noqa: F401
