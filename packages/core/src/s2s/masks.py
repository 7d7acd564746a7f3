"""Attention masks shared by backbones and tasks: UniLM prefix-LM and causal.

Every mask here is a bool tensor ``[batch, query, key]`` where ``True`` means "query position
i may attend to key position j". Backbones accept it as ``attention_mask`` (or a 2-D padding
mask ``[batch, key]``) and turn it into an additive bias themselves.

UniLM (seq2seq on an encoder). The input is ``[CLS] source [SEP] target [SEP]`` with
``token_type_ids`` ``s`` = 0 on the source and 1 on the target, and ``m`` the padding mask
(1 = real token). Position i may attend to position j when::

    a[i, j] = m[j] * ((1 - s[i]) * (1 - s[j])  +  s[i] * [j <= i])

- a source token (``s[i] = 0``) sees every source token, in both directions, and no target;
- a target token (``s[i] = 1``) sees the whole source and the target tokens up to itself
  (the source comes first, so ``j <= i`` covers all of it);
- nobody sees padding (``m[j] = 0``). Padding rows keep the source pattern so that no row is
  entirely masked (which would give NaN in softmax); their outputs are ignored by the loss.

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


__all__ = ["causal_mask", "unilm_mask"]
