"""Masked-LM pretraining on unlabeled text: adapt a model to a domain, or train one from scratch.

BERT's recipe: about ``mask_probability`` (15 %) of the real tokens are chosen (never
``[CLS]``, ``[SEP]``, ``[PAD]``); of those, 80 % become ``[MASK]``, 10 % a random token and
10 % stay as they are; the loss is cross-entropy at the chosen positions only, through the
backbone's MLM head tied to the word embeddings (``lm_logits``). Masks are drawn in
``collate`` from torch's global RNG (which the Trainer seeds), so each epoch masks anew.

Whole-word masking (``whole_word_masking=True``) chooses words instead of tokens, each word
with probability ``mask_probability``, and masks all its tokens. A word is either a text's
WordPiece word (a token and its ``##`` continuations), or, for Chinese, where every character
is a token, a word of a segmentation you give: pass each text as a list of words (from jieba,
LTP or any segmenter; s2s does not depend on one) instead of a string.

    task = load_model(tokenizer, "bert", "mlm", whole_word_masking=True)
    train = task.build_dataset(read_texts("corpus.txt"))
    trainer.train(task, train, collate_fn=task.collate)
    task.backbone.save_pretrained("my-domain-bert", tokenizer)
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from s2s.backbone import LM_HEAD
from s2s.data import LABEL_PAD, pad_batch
from s2s.task import Task, TinyRun
from s2s.task_files import TextLineFiles

from .common import DataError, build_features, fit_max_length, warn_counts
from .lm_loss import lm_loss

logger = logging.getLogger(__name__)


class MaskedLM(Task):
    capabilities = frozenset({LM_HEAD})

    def __init__(
        self,
        backbone,
        tokenizer,
        *,
        mask_probability: float = 0.15,
        whole_word_masking: bool = False,
        max_length: int | None = None,
    ):
        super().__init__(backbone, tokenizer)
        if not 0 < mask_probability < 1:
            raise ValueError(f"mask_probability must be in (0, 1), got {mask_probability}")
        if tokenizer.mask_id is None:
            raise ValueError("the vocab has no [MASK] token, which masked-LM training needs")
        self.mask_probability = mask_probability
        self.whole_word_masking = whole_word_masking
        self.max_length = fit_max_length(backbone, max_length)
        self.unmaskable_ids = sorted({tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id})
        # Random replacements are drawn from the vocab without the special tokens.
        self.register_buffer(
            "replacement_ids",
            torch.tensor([i for i in range(len(tokenizer)) if i not in self.unmaskable_ids]),
            persistent=False,
        )

    @classmethod
    def tiny_runs(cls) -> list[TinyRun]:
        texts = ["今天天气很好", "我们去公园散步", "北京队赢了比赛", "央行宣布降息"]
        return [TinyRun(texts, ["今天天[MASK]很好", "我们去[MASK]园散步"], predict_options={"top_k": 2})]

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        """Without ``labels``: ``logits`` [batch, seq, vocab]. With them (-100 = not chosen):
        ``loss`` and ``logits`` [chosen tokens, vocab] of the chosen positions only."""
        hidden = self.backbone(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state  # [batch, seq, hidden]
        if labels is None:
            return {"logits": self.backbone.lm_logits(hidden)}
        return lm_loss(self.backbone, hidden, labels, labels != LABEL_PAD)

    # --- data ----------------------------------------------------------------------------

    def build_dataset(self, texts: Iterable[str | Sequence[str]], source: str = "dataset"):
        """Features from texts (strings, or lists of words for whole-word masking); a list
        gives a list, any other iterable is encoded lazily (:func:`~s2s_tasks.common.build_features`)."""

        def encode(text, tally: Counter) -> list[dict]:
            feature, cut = self._encode(text)
            tally["truncated"] += cut
            return [feature]

        report = warn_counts("truncated", "{source}: {truncated} of {count} texts are longer than max_length="
                             "{max_length} tokens and were truncated", source=source, max_length=self.max_length)
        return build_features(texts, encode, report, source, what="texts")

    def _encode(self, text: str | Sequence[str]) -> tuple[dict, bool]:
        tokenizer = self.tokenizer
        if isinstance(text, str):
            encoding = tokenizer.encode(text)
            ids, tokens = list(encoding.ids[1:-1]), list(encoding.tokens[1:-1])
            word_ids, word = [], -1
            for token in tokens:
                word += not token.startswith("##") or word < 0
                word_ids.append(word)
        else:
            ids, word_ids = [], []
            for word, piece in enumerate(text):
                pieces = tokenizer.tokenize(piece)
                ids += [tokenizer.token_to_id(t) for t in pieces]
                word_ids += [word] * len(pieces)
        room = self.max_length - 2
        truncated = len(ids) > room
        ids, word_ids = ids[:room], word_ids[:room]
        feature = {
            "input_ids": [tokenizer.cls_id, *ids, tokenizer.sep_id],
            "attention_mask": [1] * (len(ids) + 2),
        }
        if self.whole_word_masking:
            feature["word_ids"] = [-1, *word_ids, -1]
        return feature, truncated

    def collate(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Pad, then choose and mask tokens (new choices at every call)."""
        batch = pad_batch(features, {"input_ids": self.tokenizer.pad_id, "word_ids": -1})
        input_ids, labels = self.mask_tokens(batch["input_ids"], batch.pop("word_ids", None))
        batch["input_ids"], batch["labels"] = input_ids, labels
        return batch

    def mask_tokens(self, input_ids: torch.Tensor, word_ids: torch.Tensor | None = None):
        """``(masked input_ids, labels)``; labels are -100 except at the chosen positions."""
        maskable = ~torch.isin(input_ids, torch.tensor(self.unmaskable_ids))
        if word_ids is None:
            chosen = torch.rand(input_ids.shape) < self.mask_probability
        else:  # choose words, then every token of a chosen word
            chosen_words = torch.rand(input_ids.shape[0], int(word_ids.max()) + 2) < self.mask_probability
            chosen = chosen_words.gather(1, word_ids.clamp(min=0)) & (word_ids >= 0)
        chosen &= maskable
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, LABEL_PAD))
        action = torch.rand(input_ids.shape)
        masked = input_ids.clone()
        masked[chosen & (action < 0.8)] = self.tokenizer.mask_id
        randomized = chosen & (action >= 0.8) & (action < 0.9)
        picks = torch.randint(len(self.replacement_ids), (int(randomized.sum()),))
        masked[randomized] = self.replacement_ids.cpu()[picks]
        return masked, labels

    # --- inference -----------------------------------------------------------------------

    def predict(self, texts: Sequence[str], top_k: int = 5) -> list[list[list[tuple[str, float]]]]:
        """Fill ``[MASK]``: for each text, for each ``[MASK]`` in order, the ``top_k``
        ``(token, probability)`` guesses."""
        results = []
        with self.inference():
            for text in texts:
                ids = self.tokenizer.encode(text, max_length=self.max_length).ids
                input_ids = torch.tensor([ids], device=self.device)
                probabilities = self(input_ids)["logits"][0].float().softmax(-1)  # [seq, vocab]
                positions = (input_ids[0] == self.tokenizer.mask_id).nonzero().flatten().tolist()
                guesses = []
                for position in positions:
                    best = probabilities[position].topk(top_k)
                    guesses.append([
                        (self.tokenizer.id_to_token(i), p)
                        for p, i in zip(best.values.tolist(), best.indices.tolist())
                    ])
                results.append(guesses)
        return results

    # --- s2s train / predict / serve -----------------------------------------------------

    files = TextLineFiles()


def read_texts(path: str | os.PathLike) -> list[str]:
    """One text per line of a UTF-8 file; blank lines skipped."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        texts = [line.strip() for line in handle if line.strip()]
    if not texts:
        raise DataError(f"{path} has no text (expected one text per line)")
    return texts
