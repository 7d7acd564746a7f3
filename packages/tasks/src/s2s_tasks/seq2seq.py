"""Sequence to sequence (titles, summaries, questions): UniLM on encoders, native on decoders.

**UniLM on BERT-family encoders** (needs a backbone with 3-D masks, an LM head and a KV cache).
One sequence holds source and target::

    tokens          [CLS] 今 天 天 气 [SEP] 晴 天 [SEP]
    token_type_ids    0   0  0  0  0    0   1  1   1      s (0 = source, 1 = target)

The attention mask comes from ``s`` and the padding mask ``m`` (:func:`s2s.masks.unilm_mask`)::

    a[i, j] = m[j] * ((1 - s[i]) * (1 - s[j]) + s[i] * [j <= i])

so the source reads itself in both directions and never the target, and each target token
reads the whole source and the target up to itself. The loss is shifted by one: the hidden
state at position t predicts token t + 1, with cross-entropy weighted by
``token_type_ids[:, 1:]`` (and the padding mask), i.e. only target tokens (including the
final ``[SEP]``, which teaches the model to stop) are predicted; the source ``[SEP]``
predicts the first target token.

Generation encodes the source once, keeps every layer's keys and values, and then costs one
position per new token (:class:`UniLMDecoder`); batches of sources are padded on the right
and each row's target positions continue from its own source length.

**Decoders (GPT-2)** read ``[CLS] source [SEP]`` as a prompt and continue with ``target
[SEP]``; the loss covers the target tokens only. Encoder-decoders (T5, BART) will use the
same :class:`s2s.generation.Decoder` protocol.

**Over-long input**: sources longer than the room left (``max_length`` positions minus
``max_new_tokens`` at prediction, minus the target when training) keep their beginning and
lose the end, with one warning per call that counts them.

    task = load_model(tokenizer, "roberta", "seq2seq")
    trainer.train(task, task.build_dataset(pairs), collate_fn=task.collate)
    task.predict(["今天天气很好，我们去公园散步。"], beam_size=3, max_new_tokens=32)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from s2s.backbone import DECODER, ENCODER, KV_CACHE, LM_HEAD, MASK_3D
from s2s.data import pad_batch
from s2s.generation import generate
from s2s.masks import unilm_mask
from s2s.task import Task

from .lm_loss import lm_loss

logger = logging.getLogger(__name__)


class Seq2Seq(Task):
    """Generate a target text from a source text; see the module docstring for the mechanics.

    ``max_length``: positions of one source + target sequence (default: the backbone's).
    """

    kinds = frozenset({ENCODER, DECODER})
    capabilities = frozenset({LM_HEAD, KV_CACHE})

    def __init__(self, backbone, tokenizer, *, max_length: int | None = None):
        super().__init__(backbone, tokenizer)
        config = backbone.config
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 512)
        self.max_length = min(max_length or limit, limit)
        self.unilm = backbone.kind == ENCODER

    @classmethod
    def unsupported_reason(cls, backbone_cls) -> str | None:
        reason = super().unsupported_reason(backbone_cls)
        if reason is None and backbone_cls.kind == ENCODER and MASK_3D not in backbone_cls.capabilities:
            return "UniLM on an encoder needs a backbone that accepts 3-D attention masks"
        return reason

    # --- model ---------------------------------------------------------------------------

    def forward(self, input_ids, token_type_ids, attention_mask=None):
        """Loss on the target tokens of ``[CLS] src [SEP] tgt [SEP]`` batches from :meth:`collate`;
        ``logits`` [target tokens, vocab] at the positions that predict them."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.unilm:
            mask = unilm_mask(token_type_ids, attention_mask)
            hidden = self.backbone(input_ids, attention_mask=mask, token_type_ids=token_type_ids).last_hidden_state
        else:
            hidden = self.backbone(input_ids, attention_mask=attention_mask).last_hidden_state
        scored = (token_type_ids[:, 1:] * attention_mask[:, 1:]).bool()  # the target tokens
        return lm_loss(self.backbone, hidden[:, :-1], input_ids[:, 1:], scored)  # t predicts t + 1

    # --- data ----------------------------------------------------------------------------

    def encode_pair(self, source: str, target: str) -> tuple[dict[str, list[int]], bool]:
        """Features of one pair and whether it was cut to ``max_length``: the source keeps its
        beginning (down to half the room when the target is long), then the target is cut."""
        src = self._encode_source(source)
        tgt = self.tokenizer.encode(_check_text(target, "target")).ids[1:]  # tgt [SEP]
        cut = len(src) + len(tgt) > self.max_length
        if cut:
            keep_src = max(self.max_length - len(tgt), self.max_length // 2)
            src = _cut(src, keep_src)
            tgt = _cut(tgt, self.max_length - len(src))
        ids = src + tgt
        return {"input_ids": ids, "token_type_ids": [0] * len(src) + [1] * len(tgt)}, cut

    def build_dataset(self, pairs: Sequence, source: str = "dataset") -> list[dict]:
        """Features for :meth:`collate` from ``(source, target)`` pairs or ``{"src", "tgt"}`` dicts."""
        if not pairs:
            raise ValueError(f"{source} is empty: no (source, target) pairs")
        features, truncated = [], 0
        for number, pair in enumerate(pairs, 1):
            src, tgt = (pair["src"], pair["tgt"]) if isinstance(pair, dict) else pair
            try:
                feature, cut = self.encode_pair(src, tgt)
            except ValueError as exc:
                raise ValueError(f"{source}, pair {number}: {exc}") from None
            features.append(feature)
            truncated += cut
        if truncated:
            logger.warning(
                "%s: %d of %d pairs are longer than max_length=%d tokens and were truncated "
                "(source end first)", source, truncated, len(features), self.max_length,
            )
        return features

    def collate(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Pad on the right; ``attention_mask`` marks the real tokens."""
        batch = pad_batch(
            [{**f, "attention_mask": [1] * len(f["input_ids"])} for f in features],
            {"input_ids": self.tokenizer.pad_id},
        )
        return batch

    # --- inference -----------------------------------------------------------------------

    def decoder(self, max_new_tokens: int):
        """The :class:`s2s.generation.Decoder` for this backbone."""
        if self.unilm:
            return UniLMDecoder(self.backbone)
        return backbone_decoder(self.backbone, max_new_tokens)

    def predict(
        self,
        texts: Sequence[str],
        beam_size: int = 1,
        max_new_tokens: int = 32,
        batch_size: int = 32,
        **options,
    ) -> list[str]:
        """The generated target of each text. ``options`` go to :func:`s2s.generation.generate`
        (``top_k``, ``top_p``, ``do_sample``, ``length_penalty``, ``no_repeat_ngram_size``,
        ``repetition_penalty``, ``min_new_tokens``, ``seed``…). ``[UNK]`` is banned unless
        ``banned_token_ids`` says otherwise; ``num_return_sequences`` > 1 gives a list per text."""
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts; wrap a single text in a list")
        if not 0 < max_new_tokens < self.max_length - 2:
            raise ValueError(
                f"max_new_tokens must be between 1 and max_length - 3 = {self.max_length - 3}, got {max_new_tokens}"
            )
        options.setdefault("banned_token_ids", [self.tokenizer.unk_id])
        returns = options.get("num_return_sequences", 1)
        outputs: list = []
        truncated = 0
        with self.inference():
            for start in range(0, len(texts), batch_size):
                sources = []
                for text in texts[start : start + batch_size]:
                    ids = self._encode_source(text)
                    room = self.max_length - max_new_tokens
                    truncated += len(ids) > room
                    sources.append(_cut(ids, room))
                ids = self._generate(sources, beam_size, max_new_tokens, options)
                texts_out = [self.tokenizer.decode(row) for row in ids]
                if returns > 1:
                    texts_out = [texts_out[i : i + returns] for i in range(0, len(texts_out), returns)]
                outputs.extend(texts_out)
        if truncated:
            logger.warning(
                "%d of %d texts are longer than max_length - max_new_tokens = %d tokens: their end was cut",
                truncated, len(texts), self.max_length - max_new_tokens,
            )
        return outputs

    def _generate(self, sources: list[list[int]], beam_size: int, max_new_tokens: int, options) -> list[list[int]]:
        device = self.device
        pad = self.tokenizer.pad_id
        length = max(len(s) for s in sources)
        ids = torch.full((len(sources), length), pad, dtype=torch.long)
        mask = torch.zeros((len(sources), length), dtype=torch.long)
        for row, source in enumerate(sources):
            if self.unilm:  # right padding: the target continues each row's own positions
                ids[row, : len(source)], mask[row, : len(source)] = torch.tensor(source), 1
            else:  # left padding: the prompt ends where generation starts
                ids[row, length - len(source) :], mask[row, length - len(source) :] = torch.tensor(source), 1
        ids, mask = ids.to(device), mask.to(device)
        inputs = {"input_ids": ids, "attention_mask": mask}
        prompt = {} if self.unilm else {"prompt_ids": ids, "prompt_mask": mask}
        return generate(
            self.decoder(max_new_tokens), inputs, num_beams=beam_size, max_new_tokens=max_new_tokens,
            eos_token_id=self.tokenizer.sep_id, **prompt, **options,
        )

    def _encode_source(self, text: str) -> list[int]:
        return self.tokenizer.encode(_check_text(text, "source")).ids  # [CLS] src [SEP]


@dataclass
class UniLMState:
    past: tuple  # per layer (key, value) [N, heads, T, head_dim]
    key_mask: torch.Tensor  # [N, T] 1 = real token (source padding is 0)
    next_position: torch.Tensor  # [N, 1]


class UniLMDecoder:
    """UniLM generation on an encoder with a KV cache: :class:`s2s.generation.Decoder`.

    ``start`` encodes ``{"input_ids", "attention_mask"}`` (``[CLS] src [SEP]``, padded on the
    right) once with the source's bidirectional attention; its ``[SEP]`` gives the first
    target logits. Each ``step`` feeds one target token (type 1) that attends to the real
    source tokens and the earlier target tokens, exactly the UniLM mask's target rows.
    """

    def __init__(self, backbone):
        self.backbone = backbone

    @torch.no_grad()
    def start(self, inputs):
        input_ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(input_ids)
        lengths = mask.sum(-1)  # [B]
        if input_ids.shape[1] == 0 or bool((lengths == 0).any()):
            raise ValueError("every source needs at least one token (got an empty source)")
        out = self.backbone(
            input_ids, attention_mask=mask, token_type_ids=torch.zeros_like(input_ids), use_cache=True
        )
        last = out.last_hidden_state[torch.arange(len(lengths), device=lengths.device), lengths - 1]
        return self.backbone.lm_logits(last), UniLMState(out.past_key_values, mask, lengths[:, None])

    @torch.no_grad()
    def step(self, tokens, state: UniLMState):
        key_mask = F.pad(state.key_mask, (0, 1), value=1)
        out = self.backbone(
            tokens[:, None], attention_mask=key_mask, token_type_ids=torch.ones_like(tokens)[:, None],
            position_ids=state.next_position, past_key_values=state.past, use_cache=True,
        )
        state = UniLMState(out.past_key_values, key_mask, state.next_position + 1)
        return self.backbone.lm_logits(out.last_hidden_state[:, -1]), state

    def reorder(self, state: UniLMState, index):
        past = tuple((k.index_select(0, index), v.index_select(0, index)) for k, v in state.past)
        return UniLMState(past, state.key_mask[index], state.next_position[index])


def backbone_decoder(backbone, max_new_tokens: int):
    """The generation decoder a decoder-only backbone provides (``backbone.decoder(n)``)."""
    make = getattr(backbone, "decoder", None)
    if make is None:
        raise TypeError(
            f"{type(backbone).__name__} has no decoder(max_new_tokens) method: a decoder backbone "
            f"must provide one returning an s2s.generation.Decoder to generate text"
        )
    return make(max_new_tokens)


def _cut(ids: list[int], length: int) -> list[int]:
    """``ids`` cut to ``length`` tokens keeping the beginning and the final ``[SEP]``."""
    if len(ids) <= length:
        return ids
    return ids[: length - 1] + ids[-1:]


def _check_text(text, name: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"the {name} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"the {name} text is empty")
    return text
