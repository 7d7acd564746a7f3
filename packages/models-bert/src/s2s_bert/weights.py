"""Checkpoint names of the BERT family, mapped to this package's (HF's without ``bert.``).

Read: Hugging Face ``BertForPreTraining`` / ``BertForMaskedLM`` / ``BertModel`` /
``NezhaModel`` / ``RoFormerModel`` saves (with or without the ``bert.`` / ``nezha.`` /
``roformer.`` prefix), TF-converted names (``LayerNorm.gamma`` / ``beta``), DDP saves (``module.``), s2s task saves
(``backbone.``) and the original bert_seq2seq's saves (``bert.`` + ``cls.predictions.*``,
gamma/beta, an untied decoder copy). Written: HF ``BertForMaskedLM`` names.

Pretraining leftovers that no s2s model uses are dropped without a report entry: the next
sentence head (``cls.seq_relationship.*``), HF's ``embeddings.position_ids`` buffer and
NEZHA's precomputed ``relative_positions_encoding`` tables and RoFormer's sinusoid table
(``encoder.embed_positions``). Any other key the model does not have is listed as unexpected
in the load report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from s2s.backbone import keep_token_rows
from s2s.checkpoint import CheckpointError, strip_prefixes

WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
MLM_BIAS = "cls.predictions.bias"
DECODER_WEIGHT = "cls.predictions.decoder.weight"
DECODER_BIAS = "cls.predictions.decoder.bias"
# Heads a checkpoint may lack; they are reported as newly initialised (see README).
HEAD_PREFIXES = ("pooler.", "cls.")
MODEL_PREFIXES = ("module.", "backbone.", "bert.", "nezha.", "roberta.", "roformer.")
DROPPED = (
    "cls.seq_relationship.", "embeddings.position_ids", "relative_positions_encoding", "encoder.embed_positions",
)


def to_model_names(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` renamed to this package's parameter names (see the module docstring)."""
    renamed = {}
    for key, tensor in strip_prefixes(state_dict, MODEL_PREFIXES).items():
        if any(part in key for part in DROPPED):
            continue
        if key.endswith(".gamma"):
            key = key.removesuffix(".gamma") + ".weight"
        elif key.endswith(".beta"):
            key = key.removesuffix(".beta") + ".bias"
        renamed[key] = tensor
    # The decoder is tied: its copies are dropped when they equal what they are tied to, and
    # left in place (so reported as unexpected) when a checkpoint trained them apart.
    if DECODER_BIAS in renamed and MLM_BIAS not in renamed:
        renamed[MLM_BIAS] = renamed.pop(DECODER_BIAS)
    for copy, original in ((DECODER_BIAS, MLM_BIAS), (DECODER_WEIGHT, WORD_EMBEDDINGS)):
        if copy in renamed and original in renamed and torch.equal(renamed[copy], renamed[original]):
            del renamed[copy]
    return renamed


def keep_rows(state_dict: dict[str, torch.Tensor], keep_tokens: Sequence[int], source: str) -> dict[str, torch.Tensor]:
    """Vocabulary trimming: only the rows ``keep_tokens`` of the embeddings and the MLM bias."""
    out = dict(state_dict)
    for key in (WORD_EMBEDDINGS, MLM_BIAS):
        if key in out:
            out[key] = keep_token_rows(out[key], keep_tokens, f"{source} ({key})")
    return out


def check_vocab_size(state_dict: Mapping[str, torch.Tensor], vocab_size: int, source: str) -> None:
    if WORD_EMBEDDINGS not in state_dict:
        return
    rows = state_dict[WORD_EMBEDDINGS].shape[0]
    if rows != vocab_size:
        raise CheckpointError(
            f"{source} has {rows} word embeddings ({WORD_EMBEDDINGS}) but the model's config "
            f"says vocab_size={vocab_size}: use the vocab.txt / config.json that belong to the "
            f"checkpoint, or pass keep_tokens=[ids to keep] to trim its vocabulary"
        )


def to_hf_names(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """This package's names as HF ``*ForMaskedLM`` names (``prefix`` ``"bert"`` or ``"nezha"``)."""
    return {
        key if key.startswith("cls.") else f"{prefix}.{key}": tensor
        for key, tensor in state_dict.items()
    }
