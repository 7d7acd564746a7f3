"""How :class:`~s2s_tasks.seq2seq.Seq2Seq` runs on each kind of backbone, chosen once from the
backbone's ``kind``: :class:`UniLM` on an encoder, :class:`DecoderOnly` on a decoder,
:class:`EncoderDecoder` on an encoder-decoder. Each says how a pair is laid out, how its loss is
computed, which decoder generates and how sources are padded for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from s2s.backbone import DECODER, ENCODER, ENCODER_DECODER, join_caches, map_cache, reorder_cache
from s2s.data import LABEL_PAD
from s2s.generation import decoder_for, source_batch
from s2s.nn.masks import unilm_mask

from .common import cut_keeping_last, left_padded, right_padded
from .lm_loss import lm_loss

logger = logging.getLogger(__name__)


class DecoderOnly:
    """``[CLS] src [SEP] tgt [SEP]`` in one causal sequence (``token_type_ids`` 1 on the target,
    which alone is scored); sources padded on the left, so every prompt ends where generation starts.
    On a Hugging Face tokenizer: its template's leading specials, then ``src <eos> tgt <eos>``
    (the tokenizer's ``text_ids`` and ``continuation_ids``)."""

    def __init__(self, backbone, tokenizer):
        start = tokenizer.start_ids  # [CLS]; none for Qwen2
        self.start_id, self.eos_id = (start[0] if start else None), tokenizer.end_id

    def pair(self, src: list[int], tgt: list[int], max_length: int) -> tuple[dict[str, list[int]], bool]:
        """Features of ``src`` (``[CLS] src [SEP]``) and ``tgt`` (``tgt [SEP]``), and whether they were
        cut: the source keeps its beginning (down to half the room when the target is long)."""
        cut = len(src) + len(tgt) > max_length
        if cut:
            keep_src = max(max_length - len(tgt), max_length // 2)
            src = cut_keeping_last(src, keep_src)
            tgt = cut_keeping_last(tgt, max_length - len(src))
        return {"input_ids": src + tgt, "token_type_ids": [0] * len(src) + [1] * len(tgt)}, cut

    def hidden(self, backbone, input_ids, token_type_ids, attention_mask) -> torch.Tensor:
        return backbone(input_ids, attention_mask=attention_mask).last_hidden_state

    def forward(self, backbone, input_ids, token_type_ids, attention_mask, **_) -> dict:
        hidden = self.hidden(backbone, input_ids, token_type_ids, attention_mask)  # [B, L, H]
        scored = (token_type_ids[:, 1:] * attention_mask[:, 1:]).bool()  # the target tokens
        return lm_loss(backbone, hidden[:, :-1], input_ids[:, 1:], scored)  # t predicts t + 1

    def decoder(self, backbone, max_new_tokens: int):
        return decoder_for(backbone, max_new_tokens)

    def source_room(self, max_length: int, max_new_tokens: int) -> tuple[int, int]:
        """``(most new tokens, source tokens beside max_new_tokens)``: one sequence holds both."""
        return max_length - 3, max_length - max_new_tokens

    def generation_inputs(self, sources: list[list[int]], pad_id: int, device, max_new_tokens=None) -> tuple[dict, dict]:
        """The decoder's inputs, and the prompt the engine's penalties see. ``max_new_tokens``:
        these sources' own limit, given when one decoder serves requests with different limits
        (the scheduler of ``s2s serve``); only a decoder that forces a last token reads it."""
        inputs = left_padded(sources, pad_id, device)
        return inputs, {"prompt_ids": inputs["input_ids"], "prompt_mask": inputs["attention_mask"]}


class UniLM(DecoderOnly):
    """The decoder-only layout on an encoder: the UniLM mask lets the source attend both ways
    and the target to the source and its own past; sources padded on the right, since each
    row's target continues that row's positions (:class:`~s2s_tasks.seq2seq.UniLMDecoder`)."""

    def hidden(self, backbone, input_ids, token_type_ids, attention_mask) -> torch.Tensor:
        mask = unilm_mask(token_type_ids, attention_mask)
        return backbone(input_ids, attention_mask=mask, token_type_ids=token_type_ids).last_hidden_state

    def decoder(self, backbone, max_new_tokens: int):
        return UniLMDecoder(backbone)

    def generation_inputs(self, sources: list[list[int]], pad_id: int, device, max_new_tokens=None) -> tuple[dict, dict]:
        return right_padded(sources, pad_id, device), {}


class EncoderDecoder:
    """The encoder reads the source and the decoder ``decoder_start tgt``, scored against
    ``tgt eos`` (``labels``); each has its own ``max_length`` positions. The backbone's
    ``decoder_start_token_id`` and ``eos_token_id`` win over ``[CLS]`` / ``[SEP]``."""

    def __init__(self, backbone, tokenizer):
        start, eos = backbone.decoder_start_token_id, backbone.eos_token_id
        self.start_id = tokenizer.cls_id if start is None else start
        self.eos_id = tokenizer.end_id if eos is None else eos
        self.warned_token_types = False

    def pair(self, src: list[int], tgt: list[int], max_length: int) -> tuple[dict[str, list[int]], bool]:
        tgt = tgt[:-1]  # without its [SEP]: eos_id ends the labels
        cut = len(src) > max_length or len(tgt) + 1 > max_length
        src, tgt = cut_keeping_last(src, max_length), tgt[: max_length - 1]
        return {"input_ids": src, "decoder_input_ids": [self.start_id, *tgt], "labels": [*tgt, self.eos_id]}, cut

    def forward(self, backbone, input_ids, token_type_ids, attention_mask, decoder_input_ids=None, labels=None):
        self._ignore_token_types(token_type_ids)
        hidden = backbone(input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).last_hidden_state
        return lm_loss(backbone, hidden, labels, labels != LABEL_PAD)

    def _ignore_token_types(self, token_type_ids) -> None:
        """``token_type_ids`` (from a collate function of BERT habits) mean nothing to an
        encoder-decoder, which reads the source and the target apart: dropped, with one warning."""
        if token_type_ids is not None and not self.warned_token_types:
            self.warned_token_types = True
            logger.warning(
                "seq2seq on an encoder-decoder ignores the batch's token_type_ids: the encoder reads the "
                "source and the decoder the target, so there is no segment to mark (a collate function "
                "can stop producing them; Seq2Seq.collate does not)"
            )

    def decoder(self, backbone, max_new_tokens: int):
        return decoder_for(backbone, max_new_tokens, decoder_start_token_id=self.start_id)

    def source_room(self, max_length: int, max_new_tokens: int) -> tuple[int, int]:
        return max_length, max_length  # the source has its own positions

    def generation_inputs(self, sources: list[list[int]], pad_id: int, device, max_new_tokens=None) -> tuple[dict, dict]:
        inputs = right_padded(sources, pad_id, device)
        if max_new_tokens is not None:  # the forced EOS (BART) comes at the request's own last token
            inputs["max_new_tokens"] = max_new_tokens
        return inputs, {}


@dataclass
class UniLMState:
    past: tuple  # per layer (key, value) [N, heads, T, head_dim]
    key_mask: torch.Tensor  # [N, T] 1 = real token (source padding is 0)
    next_position: torch.Tensor  # [N, 1]


class UniLMDecoder:
    """UniLM generation on an encoder with a KV cache: :class:`s2s.generation.Decoder`.

    ``start`` encodes ``{"input_ids", "attention_mask"}`` (``[CLS] src [SEP]``, padded on the
    right) once with the source's bidirectional attention; its ``[SEP]`` gives the first
    target logits. Each ``step`` feeds one target token (type 1) at its row's next position,
    attending to the real source tokens and the earlier target tokens, exactly the UniLM
    mask's target rows. ``merge`` joins running batches (continuous batching). Only the
    backbone contract's forward arguments are used.
    """

    def __init__(self, backbone):
        self.backbone = backbone

    @torch.no_grad()
    def start(self, inputs):
        input_ids, mask = source_batch(inputs)
        lengths = mask.sum(-1)  # [B]
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
        return UniLMState(reorder_cache(state.past, index), state.key_mask[index], state.next_position[index])

    def merge(self, state: UniLMState, *others: UniLMState) -> UniLMState:
        """The rows of ``state`` then those of each of ``others`` (continuous batching): each cache
        padded on the right to the longest, the padding masked. Every row keeps its own next
        position, so its logits are those it would have alone."""
        states = (state, *others)
        length = max(s.key_mask.shape[1] for s in states)
        pads = [length - s.key_mask.shape[1] for s in states]
        past = join_caches([map_cache(s.past, lambda t, pad=pad: F.pad(t, (0, 0, 0, pad))) for s, pad in zip(states, pads)])
        key_mask = torch.cat([F.pad(s.key_mask, (0, pad)) for s, pad in zip(states, pads)])  # the padding masked
        return UniLMState(past, key_mask, torch.cat([s.next_position for s in states]))


VARIANTS = {ENCODER: UniLM, DECODER: DecoderOnly, ENCODER_DECODER: EncoderDecoder}
