"""SimBERT / RoFormer-Sim: one model that writes paraphrases and embeds sentences for retrieval.

It is UniLM seq2seq (:class:`~s2s_tasks.seq2seq.Seq2Seq`, on an encoder) trained on similar
pairs ``(a, b)``, each in both orders::

    [CLS] a [SEP] b [SEP]        row 2k      the [CLS] state sees a only (UniLM mask)
    [CLS] b [SEP] a [SEP]        row 2k + 1  ... and b only

``loss = seq2seq_loss + similarity_loss``:

- ``seq2seq_loss``: the UniLM cross-entropy on the second sentence of every row;
- ``similarity_loss``: the sentence vector ``u = W h_[CLS] + c`` (a dense layer with a linear
  activation: the pooler's dense where the backbone has one, loaded from the checkpoint or
  fresh, else a layer of this task), L2-normalised; the cosine matrix of the batch with its
  diagonal masked, times ``scale`` (30; RoFormer-Sim 20), is scored by softmax cross-entropy
  against each row's partner (2k <-> 2k + 1).

Use: :meth:`SimBert.generate_similar` samples candidates, drops duplicates and the input, and
re-ranks them by cosine; :meth:`SimBert.encode_texts` / :meth:`SimBert.similarity` are the
``embedding`` task's interface, so ``s2s_tasks.embedding.FaqIndex(simbert_task, questions)``
searches with it.

    task = load_model(tokenizer, "roformer", "simbert", scale=20)
    trainer.train(task, task.build_dataset(pairs), collate_fn=task.collate)
    task.generate_similar("今天天气怎么样", n=5)   # [(text, cosine), ...] best first
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from s2s.backbone import ENCODER, KV_CACHE, LM_HEAD, MASK_3D
from s2s.nn.masks import unilm_mask
from s2s.task import Task, TinyRun

from .common import build_features, check_text, encode_texts, warn_counts
from .lm_loss import lm_loss
from .seq2seq import Seq2Seq

logger = logging.getLogger(__name__)


def similarity_loss(vectors: torch.Tensor, scale: float) -> torch.Tensor:
    """SimBERT's in-batch loss of sentence vectors [2n, H] whose rows 2k and 2k + 1 are a pair."""
    unit = F.normalize(vectors.float(), dim=-1)
    logits = scale * (unit @ unit.T)
    logits = logits.masked_fill(torch.eye(len(unit), dtype=torch.bool, device=unit.device), -1e12)
    partners = torch.arange(len(unit), device=unit.device) ^ 1  # 0 <-> 1, 2 <-> 3, ...
    return F.cross_entropy(logits, partners)


class SimBert(Seq2Seq):
    """See the module docstring. ``scale``: the similarity logits' scale (30; RoFormer-Sim 20)."""

    kinds = frozenset({ENCODER})
    capabilities = frozenset({MASK_3D, LM_HEAD, KV_CACHE})

    def __init__(self, backbone, tokenizer, *, scale: float = 30.0, max_length: int | None = None):
        super().__init__(backbone, tokenizer, max_length=max_length)
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.scale = scale
        # The pooler's dense layer (its tanh is not used); a fresh layer where there is none.
        has_pooler = backbone.pooler_dense() is not None
        self.sentence_head = None if has_pooler else nn.Linear(backbone.hidden_size, backbone.hidden_size)

    @classmethod
    def tiny_runs(cls) -> list[TinyRun]:
        pairs = [
            ("今天天气怎么样", "今天的天气如何"),
            ("怎么开通花呗", "花呗如何开通"),
            ("北京队战胜上海队", "上海队输给北京队"),
            ("明天会下雨吗", "明天下雨吗"),
        ]
        return [TinyRun(pairs, ["今天天气怎么样", "花呗怎么开通"], predict_options={"beam_size": 2, "max_new_tokens": 5})]

    @classmethod
    def unsupported_reason(cls, backbone_cls) -> str | None:
        return Task.unsupported_reason.__func__(cls, backbone_cls)

    # --- model ---------------------------------------------------------------------------

    def sentence_vectors(self, cls_states: torch.Tensor) -> torch.Tensor:
        """``W h + c`` of ``[CLS]`` states [N, H] (not normalised)."""
        dense = self.backbone.pooler_dense() if self.sentence_head is None else self.sentence_head
        return dense(cls_states)

    def forward(self, input_ids, token_type_ids, attention_mask=None):
        """``loss``, ``seq2seq_loss`` and ``similarity_loss`` of a batch from :meth:`collate`."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = unilm_mask(token_type_ids, attention_mask)
        hidden = self.backbone(input_ids, attention_mask=mask, token_type_ids=token_type_ids).last_hidden_state
        scored = (token_type_ids[:, 1:] * attention_mask[:, 1:]).bool()  # the second sentence
        seq2seq = lm_loss(self.backbone, hidden[:, :-1], input_ids[:, 1:], scored)
        similarity = similarity_loss(self.sentence_vectors(hidden[:, 0]), self.scale)
        return {
            "loss": seq2seq["loss"] + similarity,
            "seq2seq_loss": seq2seq["loss"].detach(),
            "similarity_loss": similarity.detach(),
            "logits": seq2seq["logits"],
        }

    # --- data ----------------------------------------------------------------------------

    def build_dataset(self, pairs: Iterable, source: str = "dataset"):
        """Features from similar pairs: ``(a, b)`` tuples or ``{"text": a, "text_b": b}`` dicts;
        each feature holds both orders. A list gives a list, any other iterable is encoded lazily."""

        def encode(pair, tally: Counter) -> list[dict]:
            a, b = (pair["text"], pair["text_b"]) if isinstance(pair, dict) else pair
            (ab, cut_ab), (ba, cut_ba) = self.encode_pair(a, b), self.encode_pair(b, a)
            tally["truncated"] += cut_ab or cut_ba
            return [{**ab, "swapped": ba}]  # a b, with b a beside it (len(input_ids) groups by length)

        report = warn_counts("truncated", "{source}: {truncated} of {count} pairs are longer than max_length="
                             "{max_length} tokens and were truncated", source=source, max_length=self.max_length)
        return build_features(pairs, encode, report, source, what="similar pairs (a, b)")

    def collate(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Both orders of each pair as adjacent rows (2k: a b, 2k + 1: b a), padded on the right;
        features without a swapped order (generation's sources) as they are."""
        rows = []
        for feature in features:
            rows.append({k: v for k, v in feature.items() if k != "swapped"})
            if "swapped" in feature:
                rows.append(feature["swapped"])
        return super().collate(rows)

    # --- inference -----------------------------------------------------------------------

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64, normalize: bool = True) -> torch.Tensor:
        """Sentence vectors [len(texts), H] of ``[CLS] text [SEP]``, unit length when ``normalize``."""

        def vectors(**batch) -> torch.Tensor:
            return self.sentence_vectors(self.backbone(**batch).last_hidden_state[:, 0])

        return encode_texts(self, texts, vectors, batch_size, normalize)

    def similarity(self, texts_a: Sequence[str], texts_b: Sequence[str], batch_size: int = 64) -> list[float]:
        """Cosine similarity of each ``(texts_a[i], texts_b[i])``."""
        if len(texts_a) != len(texts_b):
            raise ValueError(f"{len(texts_a)} texts_a but {len(texts_b)} texts_b")
        return (self.encode_texts(texts_a, batch_size) * self.encode_texts(texts_b, batch_size)).sum(-1).tolist()

    def generate_similar(
        self,
        text: str,
        n: int = 20,
        candidates: int = 100,
        top_p: float | None = 0.95,
        top_k: int | None = None,
        max_new_tokens: int | None = None,
        **options,
    ) -> list[tuple[str, float]]:
        """Up to ``n`` paraphrases of ``text`` as ``(text, cosine)`` pairs, best first.

        ``candidates`` are sampled (``top_p`` 0.95 as RoFormer-Sim, or ``top_k=5, top_p=None``
        as SimBERT; ``options`` go to :meth:`predict`, e.g. ``seed``), deduplicated, the input
        dropped (compared after the tokenizer's normalisation), and re-ranked by the cosine of
        their sentence vectors to the input's. Fewer than ``n`` distinct ones: a warning."""
        check_text(text, "text")
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if not isinstance(candidates, int) or candidates < n:
            raise ValueError(f"candidates ({candidates!r}) must be an integer >= n ({n}): n best are kept of them")
        source_ids = self.tokenizer.encode(text).ids
        if max_new_tokens is None:
            max_new_tokens = min(len(source_ids) * 2, self.max_length - len(source_ids)) or 1
        sampled = self.predict(
            [text], max_new_tokens=max_new_tokens, do_sample=True, top_p=top_p, top_k=top_k,
            num_return_sequences=candidates, **options,
        )[0]
        normalised = self.tokenizer.decode(source_ids)
        distinct = [s for s in dict.fromkeys(sampled) if s.strip() and s != normalised]
        if not distinct:
            logger.warning("generate_similar: none of %d samples differs from the input %r", candidates, text)
            return []
        vectors = self.encode_texts([text, *distinct])
        scores = (vectors[1:] @ vectors[0]).tolist()
        ranked = sorted(zip(distinct, scores), key=lambda pair: -pair[1])[:n]
        if len(ranked) < n:
            logger.warning("generate_similar: %d distinct paraphrases of %d samples, fewer than n=%d",
                           len(ranked), candidates, n)
        return ranked
