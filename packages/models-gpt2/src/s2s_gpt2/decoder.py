"""GPT-2 as a :class:`s2s.generation.Decoder`: a preallocated KV cache, left-padded batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .cache import KVCache
from .model import GPT2Backbone, causal_attention_mask, positions_from_mask


@dataclass
class GPT2State:
    """What a running batch carries between steps (one row per sequence)."""

    cache: KVCache
    key_mask: torch.Tensor | None  # [N, capacity] bool, True = real token; None: no padding
    next_position: torch.Tensor  # [N, 1] position id of the next token
    token_type: torch.Tensor | None  # [N, 1] type id the new tokens get (CDial-GPT speaker)


class GPT2Decoder:
    """Decode with a :class:`GPT2Backbone`.

    ``start`` takes ``{"input_ids": [B, L], "attention_mask": [B, L] (optional, 1 = real
    token; pad on the left), "token_type_ids": [B, L] (optional), "next_token_type_ids": [B]
    (optional)}``. New tokens get ``next_token_type_ids`` (CDial-GPT: the speaker of the
    reply), else the last token type. The cache is sized for ``max_new_tokens`` new tokens up front.
    """

    def __init__(self, model: GPT2Backbone, max_new_tokens: int = 64):
        self.model = model
        self.max_new_tokens = max_new_tokens

    @torch.no_grad()
    def start(self, inputs):
        input_ids = inputs["input_ids"]
        attention_mask = inputs.get("attention_mask")
        token_type_ids = inputs.get("token_type_ids")
        batch, length = input_ids.shape
        if length == 0 or batch == 0:
            raise ValueError("GPT-2 needs at least one prompt token per input (got an empty prompt)")
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None
        if attention_mask is not None and not bool(attention_mask[:, -1].all()):
            raise ValueError("pad prompts on the left: the last position of every row must be a real token")
        config = self.model.config
        capacity = min(length + self.max_new_tokens, config.n_positions)
        cache = KVCache.empty(
            config.n_layer, batch, config.n_head, capacity, config.head_dim,
            like=self.model.transformer.wte.weight,
        )
        positions = positions_from_mask(attention_mask, 0, length, input_ids.device)
        mask = causal_attention_mask(attention_mask, batch, 0, length, input_ids.device)
        hidden = self.model.run(input_ids, positions, token_type_ids, mask, cache)
        logits = self.model.lm_logits(hidden[:, -1])
        key_mask = None
        if attention_mask is not None:
            key_mask = torch.ones((batch, capacity), dtype=torch.bool, device=input_ids.device)
            key_mask[:, :length] = attention_mask.bool()
        token_type = token_type_ids[:, -1:] if token_type_ids is not None else None
        if inputs.get("next_token_type_ids") is not None:
            token_type = inputs["next_token_type_ids"].view(batch, 1)
        return logits, GPT2State(cache, key_mask, positions[:, -1:].expand(batch, 1) + 1, token_type)

    @torch.no_grad()
    def step(self, tokens, state: GPT2State):
        if int(state.next_position.max()) >= self.model.config.n_positions:
            raise ValueError(
                f"generation reached n_positions={self.model.config.n_positions}: "
                f"lower max_new_tokens or shorten the prompt"
            )
        mask = None
        if state.key_mask is not None:
            end = state.cache.length + 1
            if end > state.key_mask.shape[1]:
                state.key_mask = torch.nn.functional.pad(state.key_mask, (0, end), value=True)
            mask = state.key_mask[:, None, None, :end]
        hidden = self.model.run(tokens[:, None], state.next_position, state.token_type, mask, state.cache)
        state.next_position = state.next_position + 1
        return self.model.lm_logits(hidden[:, -1]), state

    def reorder(self, state: GPT2State, index):
        """Rows ``index``; positions that are padding in every kept row are dropped."""
        key_mask = state.key_mask[index] if state.key_mask is not None else None
        front = _padding_front(key_mask, state.cache.length)
        state.cache.reorder(index, front)
        if key_mask is not None:
            key_mask = key_mask[:, front:]
        return GPT2State(
            state.cache, key_mask, state.next_position[index],
            state.token_type[index] if state.token_type is not None else None,
        )

    def merge(self, state: GPT2State, other: GPT2State) -> GPT2State:
        """The rows of ``state`` then those of ``other`` (continuous batching). Both caches
        end at the same position: the shorter is padded on the left, masked; each row keeps
        its own positions, so its logits are those it would have alone."""
        if (state.token_type is None) != (other.token_type is None):
            raise ValueError("cannot merge GPT-2 states with and without token types")
        fronts = [_padding_front(s.key_mask, s.cache.length) for s in (state, other)]
        length = max(s.cache.length - front for s, front in zip((state, other), fronts))
        capacity = min(length + self.max_new_tokens, max(length + 1, self.model.config.n_positions))
        cache = KVCache.right_aligned([(s.cache, front) for s, front in zip((state, other), fronts)], capacity)
        masks = []
        for s, front in zip((state, other), fronts):
            size = s.cache.length - front
            mask = torch.zeros((s.next_position.shape[0], capacity), dtype=torch.bool, device=s.next_position.device)
            mask[:, length - size : length] = True if s.key_mask is None else s.key_mask[:, front : s.cache.length]
            mask[:, length:] = True
            masks.append(mask)
        token_type = None if state.token_type is None else torch.cat([state.token_type, other.token_type])
        return GPT2State(cache, torch.cat(masks), torch.cat([state.next_position, other.next_position]), token_type)


def _padding_front(key_mask: torch.Tensor | None, length: int) -> int:
    """How many first positions are padding in every row of ``key_mask`` [N, capacity]."""
    if key_mask is None or length == 0:
        return 0
    real = key_mask[:, :length].any(0)
    return int(real.int().argmax()) if bool(real.any()) else length
