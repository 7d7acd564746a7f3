"""The decoder of a backbone, chosen by its ``kind``: how tasks get one for :func:`generate`."""

from __future__ import annotations

from ..backbone import DECODER, ENCODER_DECODER, LM_HEAD
from .decoder_only import DecoderOnlyDecoder
from .encoder_decoder import EncoderDecoderDecoder


def decoder_for(backbone, max_new_tokens: int = 64, **how):
    """An :class:`s2s.generation.Decoder` for ``backbone``: :class:`DecoderOnlyDecoder` for kind
    ``decoder``, :class:`EncoderDecoderDecoder` for ``encoder-decoder`` (``how``:
    ``decoder_start_token_id=``, ``forced_eos_token_id=``). The cache is sized for
    ``max_new_tokens``; an encoder (UniLM) is decoded by the task that masks it."""
    if LM_HEAD not in backbone.capabilities:
        raise ValueError(f"{type(backbone).__name__} has no LM head (lm_logits): it cannot generate")
    if backbone.kind == DECODER:
        return DecoderOnlyDecoder(backbone, max_new_tokens, **how)
    if backbone.kind == ENCODER_DECODER:
        return EncoderDecoderDecoder(backbone, max_new_tokens, **how)
    raise ValueError(
        f"{type(backbone).__name__} is an {backbone.kind}: it has no decoder of its own "
        f"(seq2seq decodes an encoder as UniLM)"
    )
