"""The generation engine: greedy, beam search, sampling and streaming over a decoder protocol.

A model takes part by implementing :class:`Decoder` (``start`` / ``step`` / ``reorder``);
tasks call :func:`generate` or :func:`stream` with a :class:`GenerationConfig` or keyword
settings (``num_beams`` / ``beam_size``, ``max_new_tokens``, ``top_k``, ``top_p``,
``allowed_tokens_fn``, …); :mod:`.constraints` has couplet and poem rules.
"""

from .config import GenerationConfig
from .encoder_decoder import EncoderDecoderDecoder
from .protocol import Decoder, can_merge, source_batch
from .scheduler import Event, GenerationRequest, QueueFull, SamplingParams, Scheduler
from .search import beam_search, generate, make_config, options_from_row, stream

__all__ = [
    "Decoder", "EncoderDecoderDecoder", "Event", "GenerationConfig", "GenerationRequest", "QueueFull", "SamplingParams",
    "Scheduler", "beam_search", "can_merge", "generate", "make_config", "options_from_row", "source_batch", "stream",
]
