"""The skeleton of the encoder tasks that find character spans of a text (sequence labeling,
relation extraction): encode a text with its character offsets → collate → the encoder's
states under the heads → predict by batches. Each task adds its gold targets and its heads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from s2s.data import pad_batch

from .common import MODEL_INPUTS, model_inputs, text_mask


def encode_text(task, text: str) -> dict:
    """``input_ids``, ``token_type_ids``, ``attention_mask`` of ``[CLS] text [SEP]`` cut to
    ``task.max_length``; ``offsets`` (each token's characters) and ``truncated`` (whether
    some of the text did not fit)."""
    encoding = task.tokenizer.encode(text, max_length=task.max_length)
    features = model_inputs(encoding)
    features["offsets"] = encoding.offsets
    covered = max((end for _, end in encoding.offsets), default=0)
    features["truncated"] = bool(text[covered:].strip())
    return features


def collate_inputs(task, items: Sequence[dict], encode: Callable[[dict], dict]) -> tuple[list[dict], dict]:
    """``(features, batch)``: the features of ``items`` (examples go through ``encode``, features
    stay) and their model inputs padded into tensors [B, L]."""
    features = [item if "input_ids" in item else encode(item) for item in items]
    batch = pad_batch([{name: f[name] for name in MODEL_INPUTS} for f in features], {"input_ids": task.tokenizer.pad_id})
    return features, batch


def encoder_states(task, input_ids, attention_mask, token_type_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's last hidden states [B, L, H] after ``task.dropout``, and the text mask [B, L]
    (1 on the text's tokens, 0 on ``[CLS]``, ``[SEP]`` and padding)."""
    if attention_mask is None:
        attention_mask = (input_ids != task.tokenizer.pad_id).long()
    hidden = task.backbone(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
    return task.dropout(hidden), text_mask(attention_mask)


def predicted_batches(task, texts: Sequence[str], batch_size: int) -> Iterator[tuple[list, list[dict], dict, dict]]:
    """``(texts, features, batch, outputs)`` of ``texts`` by batches, in ``task.inference()``."""
    if isinstance(texts, str):
        raise TypeError("predict takes a list of texts")
    with task.inference():
        for first in range(0, len(texts), batch_size):
            chunk = texts[first : first + batch_size]
            features = [task.encode({"text": text}) for text in chunk]
            batch = task.collate_to_device(features)
            yield chunk, features, batch, task(**batch)


def predict_examples(task, examples: Sequence[dict], batch_size: int) -> list:
    """``task.predict`` of the examples' texts (``evaluate`` compares it with their answers)."""
    if not examples:
        raise ValueError("cannot evaluate on an empty dataset")
    return task.predict([e["text"] for e in examples], batch_size=batch_size)
