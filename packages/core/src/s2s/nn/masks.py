"""Attention masks: what tasks build (UniLM prefix-LM, causal) and the one mask attention takes.

Tasks build bool masks ``[batch, query, key]`` where ``True`` means "query position i may
attend to key position j" (:func:`unilm_mask`, :func:`causal_mask`, and :func:`packed_causal_mask`
for rows packed with several sequences) and pass them, or a 2-D padding mask ``[batch, key]``,
as ``attention_mask``. Backbones turn what they are given into
the mask their attention takes with :func:`attention_mask`, the one place that checks shapes
and applies the policy for a query that may see no key at all.

UniLM (seq2seq on an encoder). The input is ``[CLS] source [SEP] target [SEP]`` with
``token_type_ids`` ``s`` = 0 on the source and 1 on the target, and ``m`` the padding mask
(1 = real token). Position i may attend to position j when::

    a[i, j] = m[j] * ((1 - s[i]) * (1 - s[j])  +  s[i] * [j <= i])

- a source token (``s[i] = 0``) sees every source token, in both directions, and no target;
- a target token (``s[i] = 1``) sees the whole source and the target tokens up to itself
  (the source comes first, so ``j <= i`` covers all of it);
- nobody sees padding (``m[j] = 0``). Padding rows keep the source pattern (their outputs are
  ignored by the loss), so the only positions no query attends to are the padding ones, which
  a backbone may then leave out (:mod:`s2s.nn.packing`).

The loss then predicts token t+1 from position t on the target part only: weights
``token_type_ids[:, 1:]``.
"""

from __future__ import annotations

import torch


def unilm_mask(token_type_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The UniLM prefix-LM mask ``[batch, L, L]`` (bool) from ``token_type_ids`` ``[batch, L]``.

    ``attention_mask`` ``[batch, L]`` is the padding mask (1 = real token); see the module
    docstring for the formula.
    """
    if token_type_ids.dim() != 2:
        raise ValueError(f"token_type_ids must be [batch, length], got shape {tuple(token_type_ids.shape)}")
    target = token_type_ids.bool()  # s, [B, L]
    length = token_type_ids.shape[1]
    s_i = target[:, :, None]  # [B, L, 1] query is a target token
    s_j = target[:, None, :]  # [B, 1, L] key is a target token
    earlier = torch.ones(length, length, dtype=torch.bool, device=token_type_ids.device).tril()
    mask = (~s_i & ~s_j) | (s_i & earlier)  # [B, L, L]
    if attention_mask is not None:
        mask = mask & attention_mask.bool()[:, None, :]
    return mask


def causal_mask(
    length: int,
    attention_mask: torch.Tensor | None = None,
    *,
    past_length: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A causal mask ``[batch or 1, length, past_length + length]`` (bool).

    Query i (absolute position ``past_length + i``) sees keys ``0 .. past_length + i``;
    ``attention_mask`` ``[batch, past_length + length]`` additionally hides padding keys.
    """
    if attention_mask is not None:
        device = attention_mask.device
    keys = past_length + length
    query_pos = torch.arange(past_length, keys, device=device)[:, None]  # [L, 1]
    key_pos = torch.arange(keys, device=device)[None, :]  # [1, K]
    mask = (key_pos <= query_pos)[None]  # [1, L, K]
    if attention_mask is not None:
        if attention_mask.shape[-1] != keys:
            raise ValueError(
                f"attention_mask has {attention_mask.shape[-1]} keys; expected past_length + "
                f"length = {keys}"
            )
        mask = mask & attention_mask.bool()[:, None, :]
    return mask


def packed_causal_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """The mask ``[batch, L, L]`` (bool) of rows packed with several sequences one after the
    other: ``segment_ids`` ``[batch, L]`` numbers each token's sequence in its row (1, 2, …; 0 =
    padding). A token attends to the tokens of its own sequence up to itself (block-diagonal
    causal), so each sequence is computed as if alone (with positions restarting per sequence)."""
    if segment_ids.dim() != 2:
        raise ValueError(f"segment_ids must be [batch, length], got shape {tuple(segment_ids.shape)}")
    length = segment_ids.shape[1]
    earlier = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    return same & earlier & (segment_ids != 0)[:, None, :]


def attention_mask(
    mask: torch.Tensor | None,
    batch: int,
    queries: int,
    keys: int,
    *,
    causal: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor | None:
    """The bool mask ``[B or 1, 1, Q or 1, K]`` attention takes (True = may attend), or ``None``
    when no query is kept from any key.

    ``mask``: ``None``, a padding mask ``[B, K]`` (1 = real token) or a full mask ``[B, Q, K]``
    (1 = may attend); a batch of 1 broadcasts. K counts cached keys too: query i sits at
    position ``K - Q + i``. ``causal`` also keeps each query from the keys after it.

    The policy for a query that may see no key (a padding position): it sees every key. Its
    softmax stays finite (a fully masked row would give NaN, which reaches the gradients through
    a zero weight), and its output is read by nothing.
    """
    if mask is not None:
        _check_shape(mask, batch, queries, keys)
        device = mask.device
        mask = mask.bool()
        if bool(mask.all()):
            mask = None
    if causal and queries > 1:
        order = causal_mask(queries, past_length=keys - queries, device=device)  # [1, Q, K]
        mask = order if mask is None else order & (mask[:, None, :] if mask.dim() == 2 else mask)
    if mask is None:
        return None
    mask = mask[:, None, :] if mask.dim() == 2 else mask  # [B, Q or 1, K]
    mask = mask | ~mask.any(dim=-1, keepdim=True)  # a query that may see nothing sees everything
    return mask[:, None]


def positions_from_mask(attention_mask: torch.Tensor | None, past: int, length: int, device) -> torch.Tensor:
    """Position ids ``[B or 1, Q]`` of a decoder's ``length`` new tokens after ``past`` cached
    ones: ``cumsum(mask) - 1`` over a padding mask ``[B, past + Q]`` (left-padded rows start at
    0), else ``past .. past + Q - 1``."""
    if attention_mask is not None and attention_mask.dim() == 2:
        positions = attention_mask.long().cumsum(-1) - 1
        return positions.clamp(min=0)[:, -length:]
    return torch.arange(past, past + length, device=device)[None]


def decoder_attention_mask(mask: torch.Tensor | None, batch: int, past: int, length: int, device) -> torch.Tensor | None:
    """A decoder's bool mask ``[B, 1, Q, K]`` for ``length`` new tokens after ``past`` cached
    ones (:func:`attention_mask`: a padding ``mask`` [B, K] combined with the causal order, a full
    mask [B, Q, K] as given), or ``None`` for plain causal attention, which needs no mask without
    a cache."""
    padding = mask is None or mask.dim() == 2
    if past == 0 and padding and (mask is None or bool(mask.all())):
        return None
    return attention_mask(mask, batch, length, past + length, causal=padding, device=device)


def _check_shape(mask: torch.Tensor, batch: int, queries: int, keys: int) -> None:
    if mask.dim() not in (2, 3):
        raise ValueError(
            f"attention_mask must be [batch, keys] (padding) or [batch, queries, keys]; "
            f"got shape {tuple(mask.shape)}"
        )
    expected = (batch, keys) if mask.dim() == 2 else (batch, queries, keys)
    if mask.shape[0] not in (1, batch) or tuple(mask.shape[1:]) != expected[1:]:
        raise ValueError(
            f"attention_mask has shape {tuple(mask.shape)}, expected {expected} "
            f"(keys = cached positions + new positions = {keys})"
        )


__all__ = [
    "attention_mask", "causal_mask", "decoder_attention_mask", "packed_causal_mask", "positions_from_mask", "unilm_mask",
]
