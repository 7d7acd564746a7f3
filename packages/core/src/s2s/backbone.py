"""The backbone contract: everything a task may rely on, for every kind of backbone.

A backbone is a module with a config, a ``kind`` and ``capabilities``. Tasks look at ``kind`` and
``capabilities`` to decide whether they can run on it, and then use only the members below;
they never read a config field by name.

Every backbone
    ``hidden_size``, ``max_positions`` (``None``: unbounded, e.g. relative positions) and
    ``vocab_size``; ``input_embeddings()``; ``blocks()``: the transformer blocks in order
    (an ``nn.ModuleList``; encoder-decoders: the encoder's, then the decoder's), what
    activation checkpointing and FSDP wrap; ``resize_token_embeddings(n)``;
    ``load_pretrained(path, head_prefixes=..., keep_tokens=...)``; ``from_pretrained(path,
    **config_changes)``; ``save_pretrained(folder, tokenizer)``; ``hf_config()`` (the
    ``config.json`` dict) and ``hf_state_dict()`` (HF parameter names); ``pooler_dense()``:
    the pooler's linear map of the first token's state (before its activation), ``None``
    where the backbone has no pooler; ``head_dropout`` and ``head_init_std``: the dropout and
    initial weight std of a task's head on its states (the config's ``hidden_dropout_prob`` and
    ``initializer_range``, else 0.1 and 0.02); ``lora_targets``: a class attribute, the HF
    module names LoRA adapts by default (``"default"``, PEFT's choice for the architecture) and
    for ``targets="attention"`` (every linear map of attention), e.g. ``{"default": ("query",
    "value"), ...}`` (:mod:`s2s.adapters`).

With ``LM_HEAD``
    ``lm_logits(hidden)``: vocabulary logits ``[.., V]`` of hidden states ``[.., H]``.

Kind ``decoder``
    ``forward(input_ids, attention_mask=None, ...) -> BackboneOutput`` (causal); for
    generation, ``kv_cache_spec()`` and ``run(input_ids, position_ids, mask, cache, **extra) ->
    hidden``, as :mod:`s2s.generation.decoder_only` states them. ``kv_cache_spec()`` has a
    default, from the config's layers, key/value heads and ``head_dim`` (:meth:`Backbone.kv_cache_spec`).

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

With ``DECODER_PADDING`` (besides ``CROSS_CACHE``: rows whose decoded prefixes differ in length
decode in one batch, so sequences started at different steps share it, continuous batching)
    ``decode(..., decoder_mask=m, decoder_positions=p)``: each row is padded on the left to the
    longest; ``m`` bool ``[B, T + L]`` (True = a real decoder position; the cached ``T`` and
    the new ``L``) hides the padding from self-attention, and ``p`` long ``[B, L]`` are the
    new tokens' own positions (an absolute-position model embeds them; relative positions are
    unchanged by left padding). The self-attention cache is per layer (keys, values)
    ``[B, heads, T, head_dim]``, so generation can pad and join it.

:func:`contract_violations` lists what a backbone class lacks; the registry refuses such a class
at registration, naming the members.

What a model package writes
    Its ``Config`` (a :class:`s2s.config.Config` dataclass: HF ``config.json`` keys, ``model_type``,
    ``architecture``; ``to_hf_dict()`` when its ``config.json`` needs more), its modules and
    forward passes, and the members above that read them: ``input_embeddings()``, ``blocks()``,
    ``max_positions`` (unless its config has ``max_position_embeddings``), and per kind
    ``lm_logits`` / ``decoder`` / ``encode``, ``decode``, ``cross_key_values``. The config's
    common transformers names (``max_position_embeddings``, ``hidden_dropout_prob``,
    ``initializer_range``; its ``key_aliases`` where it spells them otherwise) give the sizes
    and the head's dropout and init. :mod:`s2s.testing.toy_encoder_decoder` is the minimum.
    Loading, resizing and saving are written here once; a package declares what differs:

    - ``checkpoint_prefixes``: prefixes stripped from checkpoint keys (``bert.``, ``model.``);
      ``rename_checkpoint(state_dict, source)``: any other renaming (TF's ``gamma``), leftovers
      dropped; ``hf_prefix`` / ``hf_unprefixed``: the prefix written before its names;
    - ``tied_weights``: checkpoint copies of a tied weight -> that weight (a tied head reads
      the embedding when it runs, so it follows a resize);
    - ``vocab_weights``: the weights indexed by token id -> that dimension (default: the input
      embeddings), kept by ``keep_tokens`` and resized together;
    - ``head_prefixes``: weights a checkpoint may lack; ``model_types``: the HF types it reads;
    - ``_init_weights(module)``: a fresh model's init (default: BERT's, normal of
      ``head_init_std``), which new rows of a resize get;
    - ``check_checkpoint(state_dict, source)``: checks beyond the vocabulary size.

    The load sequence (:meth:`Backbone.load_pretrained`): read (:func:`s2s.checkpoint.read_state_dict`)
    -> strip prefixes -> rename -> resolve tied copies -> keep rows -> check -> load all or
    nothing (:func:`s2s.checkpoint.load_into`, which checks every key and shape before it copies
    any; a model built without weights for the checkpoint, :mod:`s2s.nn.meta`, takes its tensors
    as parameters instead) -> log the report (WARNING naming unused weights). :meth:`Backbone.checkpoint_state_dict`
    is the sequence up to the load, tensors in the checkpoint's dtype.

Building blocks shared by backbones live in :mod:`s2s.nn`: the attention mask from what a task
passes (:func:`s2s.nn.masks.attention_mask`, with the one policy for a query that may see no
key), attention (:mod:`s2s.nn.attention`), padding left out of the work (:mod:`s2s.nn.packing`),
prepacked linear maps for CPU inference (:mod:`s2s.nn.prepacked`), dropout
(:mod:`s2s.nn.dropout`), initialisation (:mod:`s2s.nn.init`), activations by their HF names
(:mod:`s2s.nn.activations`), LayerNorm and RMS norm (:mod:`s2s.nn.norms`), the decoder's KV
cache (:mod:`s2s.nn.kv_cache`).
"""

from __future__ import annotations

import logging
import operator
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from . import folder
from .checkpoint import (
    CheckpointError,
    LoadReport,
    load_into,
    read_state_dict,
    save_hf_folder,
    strip_prefixes,
)
from .config import ConfigError
from .dtypes import building_in
from .nn import meta, prepacked
from .nn.init import init_normal
from .nn.kv_cache import KVCacheSpec

logger = logging.getLogger(__name__)

ENCODER = "encoder"
DECODER = "decoder"
ENCODER_DECODER = "encoder-decoder"
KINDS = (ENCODER, DECODER, ENCODER_DECODER)

# Capabilities a backbone may declare.
MASK_3D = "attention_mask_3d"  # accepts [batch, query, key] masks (UniLM prefix-LM, causal)
LM_HEAD = "lm_head"  # has ``lm_logits(hidden)``
KV_CACHE = "kv_cache"  # incremental decoding: ``past_key_values`` in, updated cache out
CROSS_CACHE = "cross_cache"  # encoder-decoder: ``cross_key_values``, ``decode(cross_key_values=...)``
DECODER_PADDING = "decoder_padding"  # encoder-decoder: ``decode(decoder_mask=..., decoder_positions=...)``
# What a generative encoder-decoder with caches declares (T5, BART): an LM head, the self-attention
# cache, the cross-attention keys/values held apart, rows of different decoded lengths in a batch.
ENCODER_DECODER_LM = frozenset({LM_HEAD, KV_CACHE, CROSS_CACHE, DECODER_PADDING})


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
    padded_vocab: ClassVar[bool] = False  # a checkpoint's vocab_size may exceed its tokenizer's (unused rows)
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
        """How many positions one sequence may have; ``None`` when there is no limit. This
        default is the config's ``max_position_embeddings`` (or the field that key aliases);
        a backbone whose config has none implements it."""
        return self.config.max_position_embeddings

    @property
    def vocab_size(self) -> int:
        return self.input_embeddings().num_embeddings

    # --- embeddings ------------------------------------------------------------------------

    def input_embeddings(self) -> nn.Embedding:
        """The word embeddings (FGM perturbs them; ``keep_tokens`` and resizing change them)."""
        raise NotImplementedError

    def blocks(self) -> nn.ModuleList:
        """The transformer blocks, in order (an encoder-decoder's encoder blocks, then its
        decoder blocks): what activation checkpointing and FSDP wrap one by one."""
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
        """Dropout before a task's head (transformers' classifiers use the backbone's own): the
        config's ``hidden_dropout_prob`` (or the field that key aliases), else 0.1."""
        return getattr(self.config, "hidden_dropout_prob", 0.1)

    @property
    def head_init_std(self) -> float:
        """Std of the normal draw of a task head's weights: the config's ``initializer_range``
        (or the field that key aliases), else 0.02."""
        return getattr(self.config, "initializer_range", 0.02)

    # --- what a model package declares for loading, resizing and saving -------------------
    # (the load sequence, resizing, from_pretrained and save_pretrained below use only these)

    # Prefixes stripped from every checkpoint key: DDP wrappers, s2s task saves, and the
    # prefixes transformers' classes put before the backbone's weights (``bert.``, ``model.``).
    checkpoint_prefixes: ClassVar[tuple[str, ...]] = ("module.", "backbone.")
    # Written: ``hf_prefix.`` before every weight name but those starting with ``hf_unprefixed``
    # (BERT: ``bert.embeddings...`` but ``cls.predictions...``); "" writes the module's names.
    hf_prefix: ClassVar[str] = ""
    hf_unprefixed: ClassVar[tuple[str, ...]] = ()
    # Checkpoint copies of tied weights -> the weight they copy (``lm_head.weight`` ->
    # ``shared.weight``): a copy stands in for an absent weight, is dropped when equal to it, and
    # is reported unused when trained apart. A tied head reads the embedding weight when it runs
    # (it has no weight of its own), so it follows a resize.
    tied_weights: ClassVar[dict[str, str]] = {}
    # Weights indexed by token id -> that dimension: kept rows (``keep_tokens``) and resized
    # together. Empty: the input embeddings' weight alone. Add an MLM bias, an untied LM head.
    vocab_weights: ClassVar[dict[str, int]] = {}
    # Weights a checkpoint may lack (a pretraining head): kept fresh, reported newly initialised.
    head_prefixes: ClassVar[tuple[str, ...]] = ()
    # HF ``model_type`` values of checkpoints this class reads (load errors name another one);
    # empty: the config's ``model_type``.
    model_types: ClassVar[tuple[str, ...]] = ()

    def rename_checkpoint(self, state_dict: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
        """A checkpoint's keys (prefixes stripped) in this module's names; this default keeps
        them. Drop here what no model uses (pretraining leftovers, constant buffers)."""
        return state_dict

    def check_checkpoint(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        """Refuse, before anything is loaded, a checkpoint whose vocabulary is not the model's;
        a package extends it for other sizes its config fixes."""
        for key, dim in self.vocab_dims().items():
            if key in state_dict and state_dict[key].shape[dim] != self.vocab_size:
                raise CheckpointError(
                    f"{source} has a vocabulary of {state_dict[key].shape[dim]} tokens ({key} "
                    f"{tuple(state_dict[key].shape)}) but the model's config says vocab_size="
                    f"{self.vocab_size}: use the vocab and config.json that belong to the checkpoint, "
                    f"or pass keep_tokens=[ids to keep] to trim its vocabulary"
                )

    def _init_weights(self, module: nn.Module) -> None:
        """A fresh model's initialisation of ``module`` (new embedding rows of a resize use it);
        this default is BERT's, :func:`s2s.nn.init.init_normal` with :attr:`head_init_std`."""
        init_normal(module, self.head_init_std)

    # --- checkpoints: one load sequence for every backbone ---------------------------------

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **config_changes):
        """A model built from the ``config.json`` (or ``bert_config.json``) beside the weights
        ``path`` (a folder or a file), with ``config_changes`` over it, its weights loaded."""
        found = folder.config_file(path)
        if found is None:
            raise ConfigError(f"no {' or '.join(folder.CONFIG_FILES)} beside {path}")
        values = folder.read_json(found) | config_changes
        with meta.empty_parameters():  # the checkpoint's tensors become the parameters
            model = cls(cls.config_class.from_dict(values, source=str(found)))
        model.load_pretrained(path)
        return model

    def load_pretrained(
        self,
        path: str | os.PathLike,
        *,
        head_prefixes: Sequence[str] | None = None,
        keep_tokens: Sequence[int] | None = None,
        ignore: Collection[str] = (),
    ) -> LoadReport:
        """Load a checkpoint file or folder, all or nothing: read, :meth:`checkpoint_state_dict`,
        :func:`s2s.checkpoint.load_into`, then log the report (at WARNING when weights go unused).

        Keys under ``head_prefixes`` (default :attr:`head_prefixes`) may be missing: they keep
        their fresh initialisation and the report lists them. ``keep_tokens`` keeps those rows
        of the checkpoint's vocabulary, in that order. Keys in ``ignore`` (a task's head beside
        the backbone) are neither loaded nor reported.

        A model built without weights (:func:`s2s.nn.meta.empty_parameters`, as ``load_model``
        and :meth:`from_pretrained` build one for a checkpoint) takes the checkpoint's tensors
        as its parameters, with no copy and no random initialisation; the weights under
        ``head_prefixes`` the checkpoint lacks are then a fresh model's."""
        source = str(path)
        state_dict = self.checkpoint_state_dict(read_state_dict(path), source, keep_tokens)
        heads = self.head_prefixes if head_prefixes is None else tuple(head_prefixes)
        report = load_into(
            self, state_dict, source=source, may_be_missing=lambda key: bool(heads) and key.startswith(heads),
            ignore_unexpected=set(ignore).__contains__, model_types=self.model_types or None,
        )
        del state_dict
        empty = meta.empty_names(self)
        if empty:
            self._fill_fresh(empty)
        report.log(logger)
        return report

    def _fill_fresh(self, names: list[str]) -> None:
        """The weights ``names``, left on the meta device by a load (the checkpoint lacked them),
        as a fresh model of this config has them (built in their dtype)."""
        dtype = self.state_dict(keep_vars=True)[names[0]].dtype
        with building_in(dtype if dtype.is_floating_point else None):
            fresh = type(self)(self.config).state_dict()
        meta.assign(self, {name: fresh[name] for name in names})

    def checkpoint_state_dict(
        self, state_dict: dict[str, torch.Tensor], source: str, keep_tokens: Sequence[int] | None = None
    ) -> dict[str, torch.Tensor]:
        """A checkpoint's tensors ready for :func:`s2s.checkpoint.load_into`: prefixes stripped,
        renamed (:meth:`rename_checkpoint`), tied copies resolved, ``keep_tokens`` rows kept,
        checked (:meth:`check_checkpoint`). Tensors keep the checkpoint's dtype."""
        state_dict = self.rename_checkpoint(strip_prefixes(state_dict, self.checkpoint_prefixes), source)
        state_dict = resolve_tied_copies(state_dict, self.tied_weights)
        if keep_tokens is not None:
            for key, dim in self.vocab_dims().items():
                if key in state_dict:
                    state_dict[key] = keep_token_rows(state_dict[key], keep_tokens, f"{source} ({key})", dim)
        self.check_checkpoint(state_dict, source)
        return state_dict

    def hf_config(self) -> dict[str, Any]:
        """The ``config.json`` transformers reads for this backbone (the config's ``to_hf_dict``)."""
        return self.config.to_hf_dict()

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under transformers' names (:attr:`hf_prefix`), tied copies left out."""
        if not self.hf_prefix:
            return dict(self.state_dict())
        return {
            key if key.startswith(self.hf_unprefixed) else f"{self.hf_prefix}.{key}": tensor
            for key, tensor in self.state_dict().items()
        }

    def save_pretrained(self, directory: str | os.PathLike, tokenizer=None) -> None:
        """Write an HF folder: ``config.json``, ``model.safetensors`` and, given a tokenizer,
        its vocabulary. Each file is written atomically."""
        save_hf_folder(directory, self.hf_state_dict(), self.hf_config(), tokenizer)

    # --- resizing --------------------------------------------------------------------------

    def vocab_dims(self) -> dict[str, int]:
        """:attr:`vocab_weights`, or the input embeddings' weight when it names none."""
        if self.vocab_weights:
            return dict(self.vocab_weights)
        embeddings = self.input_embeddings()
        return {next(n for n, m in self.named_modules() if m is embeddings) + ".weight": 0}

    def resize_token_embeddings(self, vocab_size: int) -> None:
        """Grow or shrink the vocabulary: every weight of :meth:`vocab_dims` together. Kept rows
        keep their values; new rows are initialised as in a fresh model (:meth:`_init_weights`
        on a rebuilt embedding or linear map; zeros for a bare bias); a tied head follows.
        Refuses a size that loses a special token (:meth:`check_new_vocab_size`)."""
        self.check_new_vocab_size(vocab_size)
        keep = min(vocab_size, self.vocab_size)
        for key, dim in self.vocab_dims().items():
            owner_name, _, attr = key.rpartition(".")
            owner = self.get_submodule(owner_name)
            if isinstance(owner, (nn.Embedding, nn.Linear)) and attr == "weight" and dim == 0:
                self._resize_module(owner_name, owner, vocab_size, keep)
            else:
                old = getattr(owner, attr)
                new = old.new_zeros(*old.shape[:dim], vocab_size, *old.shape[dim + 1:])
                new.narrow(dim, 0, keep).copy_(old.detach().narrow(dim, 0, keep))
                setattr(owner, attr, nn.Parameter(new, old.requires_grad) if isinstance(old, nn.Parameter) else new)
        self.config.vocab_size = vocab_size

    def _resize_module(self, name: str, old: nn.Module, vocab_size: int, keep: int) -> None:
        """Replace the embedding (or linear map, rows = outputs) ``name`` by one of ``vocab_size``
        rows initialised as in a fresh model, the first ``keep`` rows copied from ``old``."""
        if isinstance(old, nn.Embedding):
            new = type(old)(vocab_size, old.embedding_dim, padding_idx=old.padding_idx)
        else:
            new = type(old)(old.in_features, vocab_size, bias=old.bias is not None)
        new.to(device=old.weight.device, dtype=old.weight.dtype)
        parent_name, _, child = name.rpartition(".")
        setattr(self.get_submodule(parent_name), child, new)
        self._init_weights(new)  # once in place: an init may tell modules apart by where they are
        with torch.no_grad():
            for param_name, param in new.named_parameters(recurse=False):
                param[:keep] = getattr(old, param_name)[:keep]

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

    def kv_cache_spec(self) -> KVCacheSpec:
        """Decoders: what the KV cache holds (:mod:`s2s.generation.decoder_only`). This default
        reads the config's ``num_hidden_layers``, ``num_key_value_heads`` (else
        ``num_attention_heads``: no grouped-query attention) and ``head_dim`` (or the fields
        their key aliases name), in the input embeddings' dtype, on their device."""
        config, weight = self.config, self.input_embeddings().weight
        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        return KVCacheSpec(config.num_hidden_layers, kv_heads, config.head_dim, weight.dtype, weight.device)


# Config fields that name special token ids; a resize must keep them.
SPECIAL_TOKEN_IDS = (
    "pad_token_id", "unk_token_id", "cls_token_id", "sep_token_id", "mask_token_id",
    "bos_token_id", "eos_token_id", "decoder_start_token_id",
)

# Members a backbone class must implement (not inherit from Backbone), by kind and capability.
REQUIRED: dict[str, tuple[str, ...]] = {
    "*": ("forward", "max_positions", "input_embeddings", "blocks"),
    DECODER: ("run", "kv_cache_spec"),
    ENCODER_DECODER: ("encode", "decode"),
    LM_HEAD: ("lm_logits",),
    CROSS_CACHE: ("cross_key_values",),
}


# Required members Backbone's default reads from config fields, where the config has them all.
CONFIG_DEFAULTS = {
    "max_positions": ("max_position_embeddings",),
    "kv_cache_spec": ("num_hidden_layers", "num_attention_heads", "hidden_size"),
}

_MISSING = object()


def _config_has(cls: type, key: str) -> bool:
    has_key = getattr(getattr(cls, "config_class", None), "has_key", None)
    return bool(has_key and has_key(key))


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
            if name in CONFIG_DEFAULTS and all(_config_has(cls, key) for key in CONFIG_DEFAULTS[name]):
                continue
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


def map_cache(cache, fn):
    """``cache`` (tensors nested in tuples/lists) with ``fn`` applied to every tensor."""
    if isinstance(cache, torch.Tensor):
        return fn(cache)
    return type(cache)(map_cache(item, fn) for item in cache)


def join_caches(caches: list):
    """The caches' tensors concatenated on dim 0 (their rows one after another), in the nesting
    of the first: continuous batching merging running batches."""
    if isinstance(caches[0], torch.Tensor):
        return torch.cat(caches)
    return type(caches[0])(join_caches(list(items)) for items in zip(*caches))


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


def keep_token_rows(rows: torch.Tensor, keep_tokens, source: str, dim: int = 0) -> torch.Tensor:
    """The entries ``keep_tokens`` (in that order) along ``dim`` of a vocabulary-sized tensor of
    ``source`` (word embeddings, an LM head's bias)."""
    ids = check_keep_tokens(keep_tokens, rows.shape[dim], source)
    return rows.index_select(dim, torch.tensor(ids, dtype=torch.long, device=rows.device))


def resolve_tied_copies(state_dict: Mapping[str, torch.Tensor], tied: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """``state_dict`` with each checkpoint copy of a tied weight (``tied``: copy -> weight)
    standing in for the weight when it is absent and dropped when equal to it; a copy trained
    apart stays, so the load reports it unused."""
    state_dict = dict(state_dict)
    for copy, weight in tied.items():
        if copy in state_dict and weight not in state_dict:
            state_dict[weight] = state_dict.pop(copy)
        elif copy in state_dict and torch.equal(state_dict[copy], state_dict[weight]):
            del state_dict[copy]
    return state_dict
