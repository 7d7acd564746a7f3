"""The decoder protocol: what a model implements so the engine can generate with it.

The engine (:mod:`s2s.generation.search`) knows nothing about the model behind a decoder. A
decoder turns its inputs into next-token logits and keeps whatever it needs between steps
(a KV cache, an encoded source, positions, padding) in an opaque ``state``. One row of the
state is one running sequence: the engine grows, shrinks and permutes rows with
:meth:`Decoder.reorder` (expanding an input into beams or samples, following the surviving
beams, dropping finished rows).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Decoder(Protocol):
    """A model as the generation engine sees it.

    Implementations: :class:`~s2s.generation.DecoderOnlyDecoder` (any backbone of kind
    ``decoder``: KV cache, left-padded batches), :class:`~s2s.generation.EncoderDecoderDecoder`
    (kind ``encoder-decoder``: the source encoded once), both chosen by
    :func:`~s2s.generation.decoder_for`; the UniLM decoder of ``s2s_tasks.seq2seq`` (an encoder,
    the source encoded once, each step costs one position).
    """

    def start(self, inputs: Any) -> tuple[torch.Tensor, Any]:
        """Read the prompt/source ``inputs`` (a batch of ``B`` rows).

        Returns the logits of the first new token, float ``[B, vocab]``, and the state.
        """
        ...

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Append ``tokens`` (long ``[N]``, one per row of ``state``) and return the logits of
        the next token, ``[N, vocab]``, with the updated state."""
        ...

    def reorder(self, state: Any, index: torch.Tensor) -> Any:
        """A state whose row ``i`` is row ``index[i]`` of ``state`` (long ``[M]``; rows may repeat
        or be left out, so ``M`` may differ from ``N``)."""
        ...


def can_merge(decoder) -> bool:
    """Whether ``decoder`` also has the optional ``merge(state, *others) -> state``: the rows
    of ``state`` then those of each of ``others``, each row's logits unchanged, so sequences started at
    different steps run in one batch (:mod:`.scheduler`). Without it the scheduler steps each
    admitted group of sequences as its own batch."""
    return callable(getattr(decoder, "merge", None))


def source_batch(inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``input_ids`` [B, S] of a ``start`` batch of sources and their ``attention_mask``
    (all ones when absent); a batch with an empty source is refused."""
    input_ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(input_ids)
    if input_ids.shape[1] == 0 or bool((mask.sum(-1) == 0).any()):
        raise ValueError("every source needs at least one token (got an empty source)")
    return input_ids, mask
