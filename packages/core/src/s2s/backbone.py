"""The backbone contract: everything a task may rely on, for every kind of backbone.

A backbone is a module with a config, a ``kind`` and ``capabilities``. Tasks look at ``kind`` and
``capabilities`` to decide whether they can run on it, and then use only the members below;
they never read a config field by name.

Every backbone
    ``hidden_size``, ``max_positions`` (``None``: unbounded, e.g. relative positions) and
    ``vocab_size``; ``input_embeddings()`` and ``resize_token_embeddings(n)`` (an LM head tied
    to the embeddings follows; :meth:`Backbone.check_new_vocab_size` refuses a size that loses
    a special token); ``load_pretrained(path, head_prefixes=..., keep_tokens=...)`` (rows
    through :func:`keep_token_rows`, so a bad id is named with the checkpoint's vocab size);
    ``save_pretrained(folder, tokenizer)``, built here from the backbone's two pieces
    ``hf_config()`` (the ``config.json`` dict) and ``hf_state_dict()`` (HF parameter names);
    ``pooler_dense()``: the pooler's linear map of the first token's state (before its
    activation), ``None`` where the backbone has no pooler; ``head_dropout`` and
    ``head_init_std``: the dropout and initial weight std of a task's head on its states
    (defaults 0.1 and 0.02; a backbone whose config names its own returns those);
    ``lora_targets``: a class attribute, the HF module names LoRA adapts by default
    (``"default"``, PEFT's choice for the architecture) and for ``targets="attention"``
    (every linear map of attention), e.g. ``{"default": ("query", "value"), ...}``
    (:mod:`s2s.adapters`).

With ``LM_HEAD``
    ``lm_logits(hidden)``: vocabulary logits ``[.., V]`` of hidden states ``[.., H]``.

Kind ``decoder``
    ``forward(input_ids, attention_mask=None, ...) -> BackboneOutput`` (causal); for
    generation, ``kv_cache_spec()`` and ``run(input_ids, position_ids, mask, cache, **extra) ->
    hidden``, as :mod:`s2s.generation.decoder_only` states them.

Kind ``encoder-decoder``
    - ``encode(input_ids, attention_mask=None) -> encoder_states [B, S, H]``, run once per source;
    - ``decode(input_ids, encoder_states, encoder_mask=None, past_key_values=None,
      use_cache=False) -> BackboneOutput``: decoder states ``[B, L, H]``. With ``use_cache`` the
      output's ``past_key_values`` holds each layer's self-attention keys/values and the
      cross-attention keys/values, computed once from ``encoder_states``; once a cache is passed
      ``encoder_states`` may be ``None``. Every tensor of the cache has the batch on dim 0, so
      :func:`reorder_cache` reorders it for beam search;
    - ``forward(input_ids, attention_mask=None, decoder_input_ids=...) -> BackboneOutput``:
      ``decode(decoder_input_ids, encode(input_ids, attention_mask), attention_mask)``, for
      training (targets padded on the right need no decoder mask: the loss skips them);
    - ``decoder_start_token_id``, ``eos_token_id`` and ``forced_eos_token_id``: from the
      checkpoint's config (``None`` when it states none).

With ``CROSS_CACHE`` (encoder-decoders: the cross-attention keys/values apart from the cache,
so generation holds them once per source however many beams decode it)
    ``cross_key_values(encoder_states)``: every decoder layer's cross-attention keys/values,
    tensors nested in tuples/lists with the source on dim 0; and ``decode(...,
    cross_key_values=cross, cross_group=g)``: ``encoder_states`` is then not read, row ``r`` of
    ``cross`` and of ``encoder_mask`` serves the ``g`` decoder rows ``r * g .. r * g + g - 1``,
    and the output's ``past_key_values`` holds the self-attention keys/values only. A backbone
    whose class sets ``group_cross_attention = False`` is only given ``g = 1``: generation then
    copies the keys/values once per row and keeps them in place while rows stay on their
    sources, so attention runs in the shapes of a per-row cache (bit-identical to a reference
    that keeps one, where grouped queries would sum in another order).

:func:`contract_violations` lists what a backbone class lacks; the registry refuses such a class
at registration, naming the members.

Building blocks shared by backbones live in :mod:`s2s.nn`: the attention mask from what a task
passes (:func:`s2s.nn.masks.attention_mask`, with the one policy for a query that may see no
key), padding left out of the work (:mod:`s2s.nn.packing`), prepacked linear maps for CPU
inference (:mod:`s2s.nn.prepacked`), the decoder's KV cache (:mod:`s2s.nn.kv_cache`).
"""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .checkpoint import CheckpointError, LoadReport, save_hf_folder
from .nn import prepacked

ENCODER = "encoder"
DECODER = "decoder"
ENCODER_DECODER = "encoder-decoder"
KINDS = (ENCODER, DECODER, ENCODER_DECODER)

# Capabilities a backbone may declare.
MASK_3D = "attention_mask_3d"  # accepts [batch, query, key] masks (UniLM prefix-LM, causal)
LM_HEAD = "lm_head"  # has ``lm_logits(hidden)``
KV_CACHE = "kv_cache"  # incremental decoding: ``past_key_values`` in, updated cache out
CROSS_CACHE = "cross_cache"  # encoder-decoder: ``cross_key_values``, ``decode(cross_key_values=...)``


@dataclass
class BackboneOutput:
    """``last_hidden_state`` [batch, seq, hidden]; the rest when the backbone has them."""

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings + every layer
    past_key_values: object | None = None


class Backbone(nn.Module):
    """Base class of backbones; see the module docstring for the contract.

    Subclasses set ``kind``, ``capabilities`` and ``config_class`` and implement the members
    :data:`REQUIRED` names for their kind and capabilities.
    """

    kind: ClassVar[str] = ENCODER
    capabilities: ClassVar[frozenset[str]] = frozenset()
    group_cross_attention: ClassVar[bool] = True  # CROSS_CACHE: may be given cross_group > 1
    lora_targets: ClassVar[dict[str, tuple[str, ...]]] = {}  # "default" / "attention" -> HF names
    config_class: ClassVar[type]

    def __init__(self, config):
        super().__init__()
        self.config = config

    def train(self, mode: bool = True):
        """Also frees the weights prepacked for CPU inference (:mod:`s2s.nn.prepacked`) when
        going back to training, where they would only take memory."""
        if mode:
            prepacked.release(self)
        return super().train(mode)

    # --- sizes -----------------------------------------------------------------------------

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def max_positions(self) -> int | None:
        """How many positions one sequence may have; ``None`` when there is no limit."""
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return self.input_embeddings().num_embeddings

    # --- embeddings ------------------------------------------------------------------------

    def input_embeddings(self) -> nn.Embedding:
        """The word embeddings (FGM perturbs them; ``keep_tokens`` and resizing change them)."""
        raise NotImplementedError

    def resize_token_embeddings(self, vocab_size: int) -> None:
        """Grow or shrink the vocabulary; kept rows keep their values, new rows are initialised
        as in a fresh model, and an LM head tied to the embeddings follows. Implementations
        call :meth:`check_new_vocab_size` first."""
        raise NotImplementedError

    def check_new_vocab_size(self, vocab_size: int) -> None:
        """Refuse a vocabulary that would lose a special token the config names (``[PAD]``,
        the start / end tokens)."""
        special = {
            name: value for name in SPECIAL_TOKEN_IDS
            if isinstance(value := getattr(self.config, name, None), int) and not isinstance(value, bool)
        }
        smallest = max(special.values(), default=-1) + 1
        if not isinstance(vocab_size, int) or vocab_size < max(smallest, 1):
            named = ", ".join(f"{name}={value}" for name, value in special.items())
            raise ValueError(
                f"cannot resize the vocabulary to {vocab_size!r} tokens: it must hold at least "
                f"{max(smallest, 1)}{f' (the special tokens: {named})' if named else ''}"
            )

    def pooler_dense(self) -> nn.Linear | None:
        """The pooler's linear map (SimBERT's sentence vector is it without the activation);
        this default finds HF BERT's layout, ``pooler.dense``, and ``None`` elsewhere."""
        dense = getattr(getattr(self, "pooler", None), "dense", None)
        return dense if isinstance(dense, nn.Linear) else None

    @property
    def head_dropout(self) -> float:
        """Dropout before a task's head (transformers' classifiers use the backbone's own)."""
        return 0.1

    @property
    def head_init_std(self) -> float:
        """Std of the normal draw of a task head's weights (the backbone's initializer range)."""
        return 0.02

    # --- checkpoints -----------------------------------------------------------------------

    def load_pretrained(
        self,
        path: str | os.PathLike,
        *,
        head_prefixes: tuple[str, ...] | None = None,
        keep_tokens: list[int] | None = None,
    ) -> LoadReport:
        """Load weights from a checkpoint file or folder, all or nothing (:mod:`s2s.checkpoint`).

        Keys under ``head_prefixes`` may be missing (reported as newly initialised);
        ``keep_tokens`` keeps those rows of the checkpoint's vocabulary, in that order."""
        raise NotImplementedError

    def hf_config(self) -> dict[str, Any]:
        """The ``config.json`` transformers reads for this backbone."""
        raise NotImplementedError

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under transformers' names, tied copies left out."""
        raise NotImplementedError

    def save_pretrained(self, directory: str | os.PathLike, tokenizer=None) -> None:
        """Write an HF folder: ``config.json``, ``model.safetensors`` and, given a tokenizer,
        its vocabulary. Each file is written atomically."""
        save_hf_folder(directory, self.hf_state_dict(), self.hf_config(), tokenizer)

    # --- generation (s2s.generation.decoder_for picks the decoder from ``kind``) -------------

    @property
    def decoder_start_token_id(self) -> int | None:
        """Encoder-decoders: the token the decoder starts from, from the checkpoint's config."""
        return getattr(self.config, "decoder_start_token_id", None)

    @property
    def eos_token_id(self) -> int | None:
        """Generative backbones: the token that ends a generation, from the checkpoint's config."""
        return getattr(self.config, "eos_token_id", None)

    @property
    def forced_eos_token_id(self) -> int | None:
        """Encoder-decoders: the token forced as the last of ``max_new_tokens`` (BART's
        checkpoints state one), from the checkpoint's config."""
        return getattr(self.config, "forced_eos_token_id", None)


# Config fields that name special token ids; a resize must keep them.
SPECIAL_TOKEN_IDS = (
    "pad_token_id", "unk_token_id", "cls_token_id", "sep_token_id", "mask_token_id",
    "bos_token_id", "eos_token_id", "decoder_start_token_id",
)

# Members a backbone class must implement (not inherit from Backbone), by kind and capability.
REQUIRED: dict[str, tuple[str, ...]] = {
    "*": (
        "forward", "max_positions", "input_embeddings", "resize_token_embeddings",
        "load_pretrained", "hf_config", "hf_state_dict",
    ),
    DECODER: ("run", "kv_cache_spec"),
    ENCODER_DECODER: ("encode", "decode"),
    LM_HEAD: ("lm_logits",),
    CROSS_CACHE: ("cross_key_values",),
}


_MISSING = object()


def contract_violations(cls: type) -> list[str]:
    """What ``cls`` lacks to be a backbone: empty when it fulfils the contract."""
    if not (isinstance(cls, type) and issubclass(cls, Backbone)):
        return [f"{cls!r} is not a subclass of s2s.backbone.Backbone"]
    problems = []
    if cls.kind not in KINDS:
        problems.append(f"kind {cls.kind!r} is not one of {', '.join(KINDS)}")
    if not hasattr(cls, "config_class"):
        problems.append("config_class is not set")
    needed = [*REQUIRED["*"], *REQUIRED.get(cls.kind, ())]
    for capability in sorted(cls.capabilities):
        needed.extend(REQUIRED.get(capability, ()))
    for name in needed:
        own = getattr(cls, name, _MISSING)  # a class attribute ``max_positions = None`` counts
        if own is _MISSING or own is getattr(Backbone, name, _MISSING):
            problems.append(f"{name} is not implemented")
    return problems


def reorder_cache(cache, index: torch.Tensor):
    """``cache`` (tensors nested in tuples/lists, batch on dim 0) with its rows picked by
    ``index``: beam search following its beams."""
    if isinstance(cache, torch.Tensor):
        return cache.index_select(0, index)
    if cache is None:
        return None
    return type(cache)(reorder_cache(item, index) for item in cache)


def check_keep_tokens(keep_tokens, vocab_size: int | None, source: str) -> list[int]:
    """``keep_tokens`` as a list of ids of ``source``'s vocabulary of ``vocab_size`` tokens
    (``None``: not known yet, only the type is checked); a bad id is named with the size."""
    if isinstance(keep_tokens, (str, bytes)) or not hasattr(keep_tokens, "__iter__"):
        raise TypeError(f"keep_tokens must be a list of token ids, got {type(keep_tokens).__name__}")
    ids = list(keep_tokens)
    if not ids:
        raise ValueError("keep_tokens is empty: list the ids of the checkpoint's vocabulary to keep")
    size = "of unknown size" if vocab_size is None else f"of {vocab_size} tokens (ids 0..{vocab_size - 1})"
    for position, token_id in enumerate(ids):
        try:
            if isinstance(token_id, bool):
                raise TypeError
            ids[position] = token_id = operator.index(token_id)  # ints, numpy and torch ints
        except TypeError:
            raise CheckpointError(
                f"keep_tokens[{position}] = {token_id!r} is not a token id: keep_tokens lists ids "
                f"(ints) of the vocabulary of {source}, {size}"
            ) from None
        if token_id < 0 or (vocab_size is not None and token_id >= vocab_size):
            raise CheckpointError(
                f"keep_tokens[{position}] = {token_id} is out of range: the vocabulary of "
                f"{source} has {vocab_size} tokens (ids 0..{vocab_size - 1})"
            )
    return ids


def keep_token_rows(rows: torch.Tensor, keep_tokens, source: str) -> torch.Tensor:
    """The rows ``keep_tokens`` (in that order) of a vocabulary-sized tensor of ``source``
    (word embeddings, an LM head's bias)."""
    ids = check_keep_tokens(keep_tokens, rows.shape[0], source)
    return rows.index_select(0, torch.tensor(ids, dtype=torch.long, device=rows.device))
