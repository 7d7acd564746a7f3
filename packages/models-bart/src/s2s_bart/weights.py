"""Checkpoint names of BART, mapped to this package's (HF's without ``model.``).

Read: Hugging Face ``BartForConditionalGeneration`` / ``BartModel`` saves (with or without
``model.``), DDP saves (``module.``) and s2s task saves (``backbone.``). The tied copies of
the shared embeddings (``encoder.embed_tokens``, ``decoder.embed_tokens``, ``lm_head``) are
dropped when equal to ``shared.weight`` (:attr:`s2s.backbone.Backbone.tied_weights`); one
trained apart stays and is reported unused. Written: ``BartForConditionalGeneration`` names,
tied copies left out.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from s2s.checkpoint import CheckpointError

SHARED = "shared.weight"
LOGITS_BIAS = "final_logits_bias"
TIED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")
POSITIONS = ("encoder.embed_positions.weight", "decoder.embed_positions.weight")
POSITION_OFFSET = 2  # BART's learned positions start at row 2
MODEL_PREFIXES = ("module.", "backbone.", "model.")

# Key fragments of other architectures, to name what a foreign checkpoint is.
FOREIGN = (
    ("encoder.block.", "T5 / mT5 / T5-PEGASUS (T5ForConditionalGeneration)"),
    ("embeddings.word_embeddings.", "BERT-like (BertModel / BertForMaskedLM)"),
    ("transformer.wte.", "GPT-2 (GPT2LMHeadModel)"),
    ("transformer.h.", "GPT-2 (GPT2LMHeadModel)"),
)


def to_model_names(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Prefix-stripped checkpoint keys as this package's names: a 1-D ``final_logits_bias``
    as HF's ``[1, V]``."""
    renamed = dict(state_dict)
    if LOGITS_BIAS in renamed and renamed[LOGITS_BIAS].dim() == 1:
        renamed[LOGITS_BIAS] = renamed[LOGITS_BIAS][None]
    return renamed


def check_architecture(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse a checkpoint of another architecture, naming it."""
    if any(key.startswith(("encoder.layers.", "decoder.layers.")) for key in state_dict):
        return
    for fragment, name in FOREIGN:
        if any(fragment in key for key in state_dict):
            raise CheckpointError(
                f"{source} is a {name} checkpoint, not BART (no encoder.layers.* / decoder.layers.*): "
                f"load it with the backbone for that architecture"
            )


def check_positions(state_dict: Mapping[str, torch.Tensor], positions: int, source: str) -> None:
    """A position count that differs from the config: say which release fits."""
    for key in POSITIONS:
        if key in state_dict and state_dict[key].shape[0] - POSITION_OFFSET != positions:
            rows = state_dict[key].shape[0]
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(state_dict[key].shape)}, {rows - POSITION_OFFSET} positions "
                f"(+{POSITION_OFFSET} offset rows), but the model has max_position_embeddings={positions} "
                f"({positions + POSITION_OFFSET} rows): use the config.json released with these weights "
                f"(fnlp/bart-base-chinese v1 has 512 positions, v2 1024)"
            )
