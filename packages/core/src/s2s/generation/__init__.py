"""The generation engine: greedy, beam search, sampling and streaming over a decoder protocol.

A model takes part by implementing :class:`Decoder` (``start`` / ``step`` / ``reorder``); a
backbone gets its decoder from :func:`decoder_for`, chosen by its kind (:class:`DecoderOnlyDecoder`,
:class:`EncoderDecoderDecoder`). Tasks call :func:`generate` or :func:`stream` with a
:class:`GenerationConfig` or keyword settings (``num_beams`` / ``beam_size``, ``max_new_tokens``,
``top_k``, ``top_p``, ``allowed_tokens_fn``, …); :mod:`.constraints` has couplet and poem rules.
"""

from .by_kind import decoder_for
from .config import GenerationConfig
from .decoder_only import DecoderOnlyDecoder
from .encoder_decoder import EncoderDecoderDecoder
from .protocol import Decoder, can_merge, source_batch
from .scheduler import Event, GenerationRequest, QueueFull, SamplingParams, Scheduler
from .search import beam_search, generate, make_config, options_from_row, stream

__all__ = [
    "Decoder", "DecoderOnlyDecoder", "EncoderDecoderDecoder", "Event", "GenerationConfig", "GenerationRequest",
    "QueueFull", "SamplingParams", "Scheduler", "beam_search", "can_merge", "decoder_for", "generate", "make_config",
    "options_from_row", "source_batch", "stream",
]
