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

from collections.abc import Mapping

import torch

from s2s.checkpoint import CheckpointError

SHARED = "shared.weight"
LM_HEAD = "lm_head.weight"
EMBED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
MODEL_PREFIXES = ("module.", "model.", "backbone.")
DROPPED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)
MODEL_TYPES = ("t5", "mt5")


def tied(tie_word_embeddings: bool) -> dict[str, str]:
    """Checkpoint copies of ``shared`` (Backbone.tied_weights): the embed_tokens, and
    ``lm_head`` when the config ties it."""
    return dict.fromkeys((*EMBED_COPIES, *((LM_HEAD,) if tie_word_embeddings else ())), SHARED)


def to_model_names(state_dict: Mapping[str, torch.Tensor], tied: bool, source: str) -> dict[str, torch.Tensor]:
    """Prefix-stripped checkpoint keys without leftovers; with a tied config, an ``lm_head``
    that differs from the embeddings fails the load (see the module docstring)."""
    renamed = {k: v for k, v in state_dict.items() if k not in DROPPED}
    shared = next((renamed[k] for k in (SHARED, *EMBED_COPIES) if k in renamed), None)
    if tied and LM_HEAD in renamed and shared is not None and not torch.equal(renamed[LM_HEAD], shared):
        raise CheckpointError(
            f"{source}: {LM_HEAD} differs from {SHARED} but the config says "
            f"tie_word_embeddings=true, so the model would use {SHARED} as its LM head and "
            f"lose the trained head. Set tie_word_embeddings=false (config.json or "
            f"config={{'tie_word_embeddings': False}}); v1.1 / mT5 / T5-PEGASUS are untied"
        )
    return renamed
