"""Checkpoint names of BART, mapped to this package's (HF's without ``model.``).

Read: Hugging Face ``BartForConditionalGeneration`` / ``BartModel`` saves (with or without
``model.``), DDP saves (``module.``) and s2s task saves (``backbone.``). The tied copies of
the shared embeddings (``encoder.embed_tokens``, ``decoder.embed_tokens``, ``lm_head``) are
dropped when equal to ``shared.weight``; one trained apart stays and is reported unexpected.
Written: ``BartForConditionalGeneration`` names, tied copies left out.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from s2s.checkpoint import CheckpointError, strip_prefixes

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
    """``state_dict`` renamed to this package's parameter names (see the module docstring)."""
    renamed = dict(strip_prefixes(state_dict, MODEL_PREFIXES))
    if SHARED not in renamed:  # a save without the shared matrix: take a copy that has it
        for copy in TIED_COPIES:
            if copy in renamed:
                renamed[SHARED] = renamed.pop(copy)
                break
    for copy in TIED_COPIES:
        if copy in renamed and SHARED in renamed and torch.equal(renamed[copy], renamed[SHARED]):
            del renamed[copy]
    if LOGITS_BIAS in renamed and renamed[LOGITS_BIAS].dim() == 1:
        renamed[LOGITS_BIAS] = renamed[LOGITS_BIAS][None]
    return renamed


def to_hf_names(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This package's names as ``BartForConditionalGeneration`` names."""
    return {key if key == LOGITS_BIAS else f"model.{key}": tensor for key, tensor in state_dict.items()}


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


def check_sizes(state_dict: Mapping[str, torch.Tensor], vocab_size: int, positions: int, source: str) -> None:
    """A vocabulary or position count that differs from the config: say which release fits."""
    if SHARED in state_dict and state_dict[SHARED].shape[0] != vocab_size:
        rows = state_dict[SHARED].shape[0]
        raise CheckpointError(
            f"{source} has a vocabulary of {rows} tokens ({SHARED} {tuple(state_dict[SHARED].shape)}) but "
            f"the model has vocab_size={vocab_size}: use the vocab.txt and config.json released with "
            f"these weights (fnlp/bart-base-chinese v1 has 21128 tokens, v2 51271)"
        )
    for key in POSITIONS:
        if key in state_dict and state_dict[key].shape[0] - POSITION_OFFSET != positions:
            rows = state_dict[key].shape[0]
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(state_dict[key].shape)}, {rows - POSITION_OFFSET} positions "
                f"(+{POSITION_OFFSET} offset rows), but the model has max_position_embeddings={positions} "
                f"({positions + POSITION_OFFSET} rows): use the config.json released with these weights "
                f"(fnlp/bart-base-chinese v1 has 512 positions, v2 1024)"
            )
