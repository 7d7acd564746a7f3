"""Checkpoint names of the T5 family: transformers' ``T5ForConditionalGeneration`` /
``MT5ForConditionalGeneration`` names, which are this package's.

Read: HF saves (``.bin``, safetensors, sharded; the PyTorch port of T5-PEGASUS is an
``MT5ForConditionalGeneration`` save), with ``module.`` (DDP), ``model.`` or ``backbone.``
(s2s task saves) prefixes. The encoder's and decoder's ``embed_tokens`` are ``shared``: their
copies are dropped when equal to it (and stand in for it when it is absent). The decoder
cross-attention's unused ``relative_attention_bias`` of old saves is dropped.

The LM head follows the config's ``tie_word_embeddings``: tied, a checkpoint's
``lm_head.weight`` equal to ``shared.weight`` is dropped, and one that differs fails the load
(tying it would silently change the model); untied, ``lm_head.weight`` must be there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch

from s2s.backbone import keep_token_rows
from s2s.checkpoint import CheckpointError, load_into, read_state_dict, strip_prefixes

SHARED = "shared.weight"
LM_HEAD = "lm_head.weight"
EMBED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
MODEL_PREFIXES = ("module.", "model.", "backbone.")
DROPPED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)
MODEL_TYPES = ("t5", "mt5")


def to_model_names(state_dict: Mapping[str, torch.Tensor], tied: bool, source: str) -> dict[str, torch.Tensor]:
    """``state_dict`` without prefixes, leftovers and tied copies (see the module docstring)."""
    renamed = {k: v for k, v in strip_prefixes(state_dict, MODEL_PREFIXES).items() if k not in DROPPED}
    for copy in EMBED_COPIES:
        if copy in renamed:
            if SHARED not in renamed:
                renamed[SHARED] = renamed.pop(copy)
            elif torch.equal(renamed[copy], renamed[SHARED]):
                del renamed[copy]
    if tied and LM_HEAD in renamed and SHARED in renamed:
        if not torch.equal(renamed[LM_HEAD], renamed[SHARED]):
            raise CheckpointError(
                f"{source}: {LM_HEAD} differs from {SHARED} but the config says "
                f"tie_word_embeddings=true, so the model would use {SHARED} as its LM head and "
                f"lose the trained head. Set tie_word_embeddings=false (config.json or "
                f"config={{'tie_word_embeddings': False}}); v1.1 / mT5 / T5-PEGASUS are untied"
            )
        del renamed[LM_HEAD]
    return renamed


def keep_rows(state_dict: dict[str, torch.Tensor], keep_tokens: Sequence[int], source: str) -> dict[str, torch.Tensor]:
    """Vocabulary trimming: only the rows ``keep_tokens`` of ``shared`` and ``lm_head``."""
    return {k: keep_token_rows(v, keep_tokens, source) if k in (SHARED, LM_HEAD) else v for k, v in state_dict.items()}


def load(model, path: str | os.PathLike, *, head_prefixes: tuple[str, ...] = (), keep_tokens=None):
    """Load ``path`` into ``model`` (a T5 backbone), all or nothing, and return the report."""
    source = str(path)
    state_dict = to_model_names(read_state_dict(path), model.config.tie_word_embeddings, source)
    if keep_tokens is not None:
        state_dict = keep_rows(state_dict, keep_tokens, source)
    if SHARED in state_dict and state_dict[SHARED].shape[0] != model.config.vocab_size:
        raise CheckpointError(
            f"{source} has {state_dict[SHARED].shape[0]} token embeddings ({SHARED}) but the "
            f"model's config says vocab_size={model.config.vocab_size}: use the vocab.txt / "
            f"config.json that belong to the checkpoint, or pass keep_tokens=[ids to keep]"
        )
    return load_into(
        model, state_dict, source=source, may_be_missing=lambda k: k.startswith(head_prefixes), model_types=MODEL_TYPES
    )

