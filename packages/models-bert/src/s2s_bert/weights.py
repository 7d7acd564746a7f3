"""Checkpoint names of the BERT family, mapped to this package's (HF's without ``bert.``).

Read: Hugging Face ``BertForPreTraining`` / ``BertForMaskedLM`` / ``BertModel`` /
``NezhaModel`` / ``RoFormerModel`` saves (with or without the ``bert.`` / ``nezha.`` /
``roformer.`` prefix), TF-converted names (``LayerNorm.gamma`` / ``beta``), DDP saves (``module.``), s2s task saves
(``backbone.``) and the original bert_seq2seq's saves (``bert.`` + ``cls.predictions.*``,
gamma/beta, an untied decoder copy). Written: HF ``BertForMaskedLM`` names.

Pretraining leftovers that no s2s model uses are dropped without a report entry: the next
sentence head (``cls.seq_relationship.*``), HF's ``embeddings.position_ids`` buffer and
NEZHA's precomputed ``relative_positions_encoding`` tables and RoFormer's sinusoid table
(``encoder.embed_positions``). Any other key the model does not have is listed as unused
in the load report.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
MLM_BIAS = "cls.predictions.bias"
# The MLM decoder is tied: its copies stand for what they copy (Backbone.tied_weights).
TIED = {"cls.predictions.decoder.bias": MLM_BIAS, "cls.predictions.decoder.weight": WORD_EMBEDDINGS}
# Heads a checkpoint may lack; they are reported as newly initialised (see README).
HEAD_PREFIXES = ("pooler.", "cls.")
MODEL_PREFIXES = ("module.", "backbone.", "bert.", "nezha.", "roberta.", "roformer.")
DROPPED = (
    "cls.seq_relationship.", "embeddings.position_ids", "relative_positions_encoding", "encoder.embed_positions",
)


def to_model_names(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Prefix-stripped checkpoint keys as this package's names: leftovers dropped, TF's
    ``gamma`` / ``beta`` as ``weight`` / ``bias``."""
    renamed = {}
    for key, tensor in state_dict.items():
        if any(part in key for part in DROPPED):
            continue
        if key.endswith(".gamma"):
            key = key.removesuffix(".gamma") + ".weight"
        elif key.endswith(".beta"):
            key = key.removesuffix(".beta") + ".bias"
        renamed[key] = tensor
    return renamed
