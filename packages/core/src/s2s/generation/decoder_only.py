"""Generation with any decoder-only backbone (kind ``decoder``), built from the backbone contract.

A decoder-only backbone takes part by implementing, besides ``lm_logits`` (``LM_HEAD``) and
``max_positions`` (``None``: unbounded):

- ``kv_cache_spec() -> s2s.nn.kv_cache.KVCacheSpec``: its layers, **key/value** heads (fewer
  than the query heads under grouped-query attention), ``head_dim``, dtype and device
  (:meth:`s2s.backbone.Backbone.kv_cache_spec` reads them from the config's common names);
- ``run(input_ids, position_ids, mask, cache, **extra) -> hidden``: ``input_ids`` long
  ``[B, Q]``; ``position_ids`` long ``[B or 1, Q]``; ``mask`` bool ``[B, 1, Q, K]`` (True = may
  attend, ``K = cache.length + Q``) or ``None`` for plain causal attention; ``cache`` a
  :class:`~s2s.nn.kv_cache.KVCache` into which each layer writes its new keys/values with
  ``cache.write(layer, kv)`` (``[2, B, kv_heads, Q, head_dim]``) and attends over what that
  returns: the caller reserves the room before and advances the cache after. Returns the hidden
  states after the final norm, ``[B, Q, H]``. ``extra`` are per-token inputs ``[B, Q]`` by name
  (GPT-2: ``token_type_ids``); a backbone refuses names it does not take.

:class:`DecoderOnlyDecoder` keeps a preallocated cache of the prompt and new tokens, left-padded
batches (a key mask over the cache, position ids counted from each row's first real token) and
the next position of each row; ``merge`` joins batches started at different steps (continuous
batching, :mod:`s2s.generation.scheduler`).

:func:`causal_forward` is the ``forward`` of such a backbone written once on ``run``: padding
and 3-D masks, default position ids, a cache given as a :class:`~s2s.nn.kv_cache.KVCache` or as
per-layer tuples, and padded positions left out of the work when there is no cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..backbone import BackboneOutput
from ..nn.kv_cache import KVCache
from ..nn.masks import decoder_attention_mask, positions_from_mask
from ..nn.packing import Packing

OWN_INPUTS = ("input_ids", "attention_mask")
NEXT = "next_"  # ``next_<name>`` [B]: the per-token input ``<name>`` of the generated tokens


@dataclass
class DecoderOnlyState:
    """What a running batch carries between steps (one row per sequence)."""

    cache: KVCache
    key_mask: torch.Tensor | None  # [N, capacity] bool, True = real token; None: no padding
    next_position: torch.Tensor  # [N, 1] position id of the next token
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # [N, 1] each: the next token's inputs


class DecoderOnlyDecoder:
    """A decoder-only backbone as an :class:`s2s.generation.Decoder`.

    ``start`` takes ``{"input_ids": [B, L], "attention_mask": [B, L] (optional, 1 = real token;
    pad on the left)}`` and any per-token input the backbone's ``run`` takes, ``name``: [B, L];
    the generated tokens get ``next_<name>`` [B] when given (CDial-GPT: the speaker of the
    reply), else each row's last value. The cache is sized for ``max_new_tokens`` new tokens up
    front (and grows if a caller steps further). A prompt read alone (one row, no padding)
    reuses the keys/values of the beginning it shares with the previous one read alone.
    """

    def __init__(self, backbone, max_new_tokens: int = 64):
        self.backbone = backbone
        self.max_new_tokens = max_new_tokens
        self._prompt = None  # (ids [L], keys/values [layers, 2, 1, kv_heads, L, head_dim], weights)

    def _weights(self) -> tuple:
        """Changes when a parameter is written in place (training, ``load_state_dict``) or
        replaced; inference tensors cannot be updated (they have no version counter)."""
        return tuple((p.data_ptr(), 0 if p.is_inference() else p._version) for p in self.backbone.parameters())

    def _reuse_prompt(self, input_ids, cache: KVCache) -> int:
        """Copy into ``cache`` the keys/values of the beginning ``input_ids`` [L] shares with the
        previous one-row prompt (a chat template's system prompt: continuous batching reads
        prompts one by one); how many positions (at most ``L - 1``: the last one gives the logits)."""
        if self._prompt is None or self._prompt[2] != self._weights():
            return 0
        ids, keys_values, _ = self._prompt
        size = min(len(ids), len(input_ids) - 1)
        differs = (ids[:size] != input_ids[:size]).nonzero()
        shared = int(differs[0]) if len(differs) else size
        cache.data[:, :, :, :, :shared] = keys_values[:, :, :, :, :shared]
        cache.advance(shared)
        return shared

    @torch.no_grad()
    def start(self, inputs):
        input_ids = inputs["input_ids"]
        attention_mask = inputs.get("attention_mask")
        batch, length = input_ids.shape
        if length == 0 or batch == 0:
            raise ValueError("decoder-only generation needs at least one prompt token per input (got an empty prompt)")
        limit = self.backbone.max_positions
        if limit is not None and length > limit:
            raise ValueError(f"the prompt has {length} tokens, but this backbone takes {limit} positions: shorten it")
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None
        if attention_mask is not None and not bool(attention_mask[:, -1].all()):
            raise ValueError("pad prompts on the left: the last position of every row must be a real token")
        prompt_extra, next_extra = _extra_inputs(inputs, batch, length)
        capacity = length + self.max_new_tokens if limit is None else min(length + self.max_new_tokens, limit)
        cache = KVCache.allocate(self.backbone.kv_cache_spec(), batch, capacity)
        alone = batch == 1 and attention_mask is None and not prompt_extra
        past = self._reuse_prompt(input_ids[0], cache) if alone else 0
        positions = positions_from_mask(attention_mask, past, length - past, input_ids.device)
        mask = decoder_attention_mask(attention_mask, batch, past, length - past, input_ids.device)
        logits = self._logits(input_ids[:, past:], positions, mask, cache, prompt_extra)
        if alone:
            self._prompt = (input_ids[0].clone(), cache.data[:, :, :, :, :length].clone(), self._weights())
        key_mask = None
        if attention_mask is not None:
            key_mask = torch.ones((batch, capacity), dtype=torch.bool, device=input_ids.device)
            key_mask[:, :length] = attention_mask.bool()
        return logits, DecoderOnlyState(cache, key_mask, positions[:, -1:].expand(batch, 1) + 1, next_extra)

    @torch.no_grad()
    def step(self, tokens, state: DecoderOnlyState):
        limit = self.backbone.max_positions
        if limit is not None and int(state.next_position.max()) >= limit:
            raise ValueError(
                f"generation reached the backbone's {limit} positions: lower max_new_tokens or shorten the prompt"
            )
        mask = None
        if state.key_mask is not None:
            end = state.cache.length + 1
            if end > state.key_mask.shape[1]:
                state.key_mask = torch.nn.functional.pad(state.key_mask, (0, end), value=True)
            mask = state.key_mask[:, None, None, :end]
        logits = self._logits(tokens[:, None], state.next_position, mask, state.cache, state.extra)
        state.next_position = state.next_position + 1
        return logits, state

    def reorder(self, state: DecoderOnlyState, index):
        """Rows ``index``; positions that are padding in every kept row are dropped."""
        key_mask = state.key_mask[index] if state.key_mask is not None else None
        front = _padding_front(key_mask, state.cache.length)
        state.cache.reorder(index, front)
        if key_mask is not None:
            key_mask = key_mask[:, front:]
        extra = {name: value[index] for name, value in state.extra.items()}
        return DecoderOnlyState(state.cache, key_mask, state.next_position[index], extra)

    def merge(self, state: DecoderOnlyState, *others: DecoderOnlyState) -> DecoderOnlyState:
        """The rows of ``state`` then those of each of ``others`` (continuous batching), in one
        copy. The caches end at the same position: the shorter are padded on the left, masked;
        each row keeps its own positions, so its logits are those it would have alone."""
        states = (state, *others)
        if any(s.extra.keys() != state.extra.keys() for s in others):
            raise ValueError(f"cannot merge states with different inputs: {[sorted(s.extra) for s in states]}")
        fronts = [_padding_front(s.key_mask, s.cache.length) for s in states]
        length = max(s.cache.length - front for s, front in zip(states, fronts))
        limit = self.backbone.max_positions
        capacity = length + self.max_new_tokens
        if limit is not None:
            capacity = min(capacity, max(length + 1, limit))
        cache = KVCache.right_aligned([(s.cache, front) for s, front in zip(states, fronts)], capacity)
        masks = []
        for s, front in zip(states, fronts):
            size = s.cache.length - front
            mask = torch.zeros((s.next_position.shape[0], capacity), dtype=torch.bool, device=s.next_position.device)
            mask[:, length - size : length] = True if s.key_mask is None else s.key_mask[:, front : s.cache.length]
            mask[:, length:] = True
            masks.append(mask)
        extra = {name: torch.cat([s.extra[name] for s in states]) for name in state.extra}
        return DecoderOnlyState(cache, torch.cat(masks), torch.cat([s.next_position for s in states]), extra)

    def _logits(self, input_ids, positions, mask, cache: KVCache, extra):
        """Next-token logits [B, V] after ``input_ids`` [B, Q], writing their keys/values."""
        cache.reserve(input_ids.shape[1])
        hidden = self.backbone.run(input_ids, positions, mask, cache, **extra)
        cache.advance(input_ids.shape[1])
        return self.backbone.lm_logits(hidden[:, -1])


def cached_length(past_key_values) -> int:
    """How many positions ``past_key_values`` holds: a :class:`~s2s.nn.kv_cache.KVCache`,
    per-layer ``(key, value)`` [B, kv_heads, T, head_dim], or ``None`` (0)."""
    if past_key_values is None:
        return 0
    if isinstance(past_key_values, KVCache):
        return past_key_values.length
    return past_key_values[0][0].shape[2]


def causal_forward(
    backbone,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    past_key_values=None,
    use_cache: bool = False,
    output_hidden_states: bool = False,
    **extra,
) -> BackboneOutput:
    """A decoder-only backbone's ``forward`` through its ``run`` (the module docstring):

    - ``attention_mask`` [B, K]: padding (1 = real token), combined with the causal mask;
      [B, Q, K]: the full mask (1 = may attend), used as given. K counts cached positions.
    - ``position_ids`` default: from the padding mask (``cumsum - 1``, so left-padded rows
      start at 0), else ``past .. past + Q - 1``.
    - ``past_key_values``: per-layer ``(key, value)`` [B, kv_heads, T, head_dim] (the output's
      cache is then tuples too) or a :class:`~s2s.nn.kv_cache.KVCache` (updated in place).
    - ``extra``: per-token inputs ``run`` takes by name (``None`` values are left out).

    Without a cache, padded positions are left out (their outputs are 0)."""
    batch, length = input_ids.shape
    cache = past_key_values
    if isinstance(cache, (tuple, list)):
        cache = KVCache.from_tuples(cache, extra=length)
    elif cache is None and use_cache:
        cache = KVCache.allocate(backbone.kv_cache_spec(), batch, length)
    past = cache.length if cache is not None else 0
    if position_ids is None:
        position_ids = positions_from_mask(attention_mask, past, length, input_ids.device)
    mask = decoder_attention_mask(attention_mask, batch, past, length, input_ids.device)
    packing = None
    if cache is None and mask is not None and attention_mask.dim() == 2:
        packing = Packing(attention_mask)
    hidden_states = [] if output_hidden_states else None
    extra = {name: value for name, value in extra.items() if value is not None}
    if cache is not None:
        cache.reserve(length)
    hidden = backbone.run(input_ids, position_ids, mask, cache, hidden_states=hidden_states, packing=packing, **extra)
    if cache is not None:
        cache.advance(length)
    if isinstance(past_key_values, (tuple, list)) or (past_key_values is None and use_cache):
        cache = cache.to_tuples()
    return BackboneOutput(
        last_hidden_state=hidden,
        hidden_states=tuple(hidden_states) if hidden_states is not None else None,
        past_key_values=cache if use_cache else None,
    )


def _extra_inputs(inputs, batch: int, length: int) -> tuple[dict, dict]:
    """The per-token inputs of the prompt ([B, L] each) and of the next token ([B, 1] each)."""
    prompt, following = {}, {}
    for name, value in inputs.items():
        if name in OWN_INPUTS or value is None or name.startswith(NEXT):
            continue
        if tuple(value.shape) != (batch, length):
            raise ValueError(f"{name} has shape {tuple(value.shape)}; expected [batch, length] = {[batch, length]}")
        prompt[name], following[name] = value, value[:, -1:]
    for name, value in inputs.items():
        if name.startswith(NEXT) and value is not None:
            if value.numel() != batch:
                raise ValueError(f"{name} has shape {tuple(value.shape)}; expected one value per row, [{batch}]")
            following[name[len(NEXT):]] = value.view(batch, 1)
    return prompt, following


def _padding_front(key_mask: torch.Tensor | None, length: int) -> int:
    """How many first positions are padding in every row of ``key_mask`` [N, capacity]."""
    if key_mask is None or length == 0:
        return 0
    real = key_mask[:, :length].any(0)
    return int(real.int().argmax()) if bool(real.any()) else length
