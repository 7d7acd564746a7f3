"""Instruction tuning (SFT): train a model to answer chats, with the loss on the answers only.

Data: OpenAI ``messages``, ShareGPT or Alpaca records (:mod:`s2s_tasks.sft_data`; the format
of a file is detected and a mixed or unknown one is refused naming the line). A chat is
rendered by the tokenizer's chat template, or by the default template, which the saved folder
then carries (:mod:`s2s_tasks.chat_format`), so ``predict`` and ``serve`` build prompts the
same way.

**Decoders** (GPT-2, Qwen2/3, Llama, GLM-4) read the whole rendered chat; the loss covers the
tokens of the assistant turns, each turn's end-of-turn token included (``train_on_prompt=True``:
every token but the first); an assistant turn of OpenAI ``"weight": 0`` gets no loss either way
(:mod:`s2s_tasks.sft_data`). ``pack=True`` fills rows of ``max_length`` tokens with several
chats one after the other (greedily, in order): each token attends to the earlier tokens of
its own chat only (:func:`s2s.nn.masks.packed_causal_mask`) and positions restart at 0 per
chat, so a packed batch has the loss of the same chats unpacked, with less padding.

**Encoder-decoders** (T5, BART): the encoder reads the prompt (the chat rendered up to an
assistant turn, with the template's generation prompt) and the decoder that turn's text, one
pair per assistant turn of weight 1 (:class:`~s2s_tasks.seq2seq_variants.EncoderDecoder`'s
layout). There is no prompt in the decoder to train on, so ``train_on_prompt`` (like ``pack``)
is refused on them.

**Length**: a chat longer than ``max_length`` loses its oldest exchanges (system turns stay)
until it fits; one that cannot fit that way, or any over-long one with ``overlong="skip"``, is
left out. Each pass logs how many chats were shortened and skipped. A prompt for prediction
loses its oldest exchanges to leave room for ``max_new_tokens``, then keeps its end.

    sft = load_model(tokenizer, "qwen2", "sft", checkpoint="Qwen/Qwen2.5-0.5B-Instruct", lora=dict(r=8))
    trainer.train(sft, sft.build_dataset(read_conversations("train.jsonl")), collate_fn=sft.collate)
    sft.predict(["把这句话翻译成英文：你好"])            # a question, or a list of messages
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch
from torch.utils.data import IterableDataset

from s2s.backbone import DECODER, ENCODER_DECODER, KV_CACHE, LM_HEAD
from s2s.data import pad_batch
from s2s.generation import GenerationRequest, generate, stream
from s2s.nn.masks import packed_causal_mask
from s2s.task import Task, TinyRun

from .chat_format import ChatFormat, drop_oldest_turn
from .common import build_features, fit_max_length, padding_id
from .lm_loss import lm_loss
from .seq2seq_variants import VARIANTS
from .sft_data import ChatFiles, Conversation, conversation, to_messages, weight

logger = logging.getLogger(__name__)

OVERLONG = ("drop_oldest", "skip")


class SFT(Task):
    """Answer chats; see the module docstring. Options: ``max_length`` (default: the backbone's
    positions), ``chat_template`` (Jinja source; default: the tokenizer's, else the default
    template), ``train_on_prompt`` and ``pack`` (decoders), and ``overlong`` (``"drop_oldest"`` or
    ``"skip"``)."""

    kinds = frozenset({DECODER, ENCODER_DECODER})
    capabilities = frozenset({LM_HEAD, KV_CACHE})

    def __init__(self, backbone, tokenizer, *, max_length: int | None = None, chat_template: str | None = None,
                 train_on_prompt: bool = False, pack: bool = False, overlong: str = "drop_oldest"):
        super().__init__(backbone, tokenizer)
        if overlong not in OVERLONG:
            raise ValueError(f"overlong={overlong!r} must be one of {', '.join(OVERLONG)}")
        self.encoder_decoder = backbone.kind == ENCODER_DECODER
        if pack and self.encoder_decoder:
            raise ValueError("pack=True packs the rows of a decoder; an encoder-decoder reads each prompt apart")
        if train_on_prompt and self.encoder_decoder:
            raise ValueError(
                f"train_on_prompt=True (--train-on-prompt) puts the loss on the prompt tokens of a decoder's rows; "
                f"{backbone.config.model_type} is an encoder-decoder, whose prompt is the encoder's input, which "
                "has no loss: leave train_on_prompt off (the loss is on the answers), or train a decoder"
            )
        self.max_length = fit_max_length(backbone, max_length)
        self.format = ChatFormat(tokenizer, chat_template)
        self.variant = VARIANTS[backbone.kind](backbone, tokenizer)  # the layout of seq2seq on this kind
        self.train_on_prompt, self.pack, self.overlong = train_on_prompt, pack, overlong
        self.pad_id = padding_id(tokenizer)
        unk = tokenizer.special_tokens_map.get("unk_token")
        self.banned_ids = [tokenizer.token_to_id(unk)] if unk is not None else []
        self.stop_ids = [self.variant.eos_id] if self.encoder_decoder else self.format.stop_ids

    @classmethod
    def tiny_runs(cls) -> list[TinyRun]:
        chats = [
            {"messages": [{"role": "system", "content": "你是助手"}, {"role": "user", "content": "今天天气怎么样"},
                          {"role": "assistant", "content": "晴天"}]},
            {"instruction": "把数字加一", "input": "三", "output": "四"},
            {"conversations": [{"from": "human", "value": "你是谁"}, {"from": "gpt", "value": "我是助手"},
                               {"from": "human", "value": "再见"}, {"from": "gpt", "value": "再见"}]},
        ]
        inputs = ["今天天气怎么样", [{"role": "user", "content": "你是谁"}]]
        return [TinyRun(chats, inputs, predict_options={"max_new_tokens": 4})]

    def saved_options(self, options: dict) -> dict:
        """The options, with the template when it is not the tokenizer's own (the default)."""
        if self.format.saved_template is not None:
            return {**options, "chat_template": self.format.saved_template}
        return options

    # --- model ---------------------------------------------------------------------------

    def forward(self, input_ids, attention_mask=None, loss_mask=None, position_ids=None, decoder_input_ids=None,
                labels=None):
        """Loss on the answer tokens of batches from :meth:`collate`; ``logits`` [scored tokens,
        vocab]. Decoders: ``loss_mask`` marks the scored tokens (each predicted from the one
        before), a packed batch has ``attention_mask`` [B, L, L] and ``position_ids``.
        Encoder-decoders: the prompt, ``decoder_input_ids`` and ``labels``."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.encoder_decoder:
            return self.variant.forward(self.backbone, input_ids, None, attention_mask,
                                        decoder_input_ids=decoder_input_ids, labels=labels)
        positions = {} if position_ids is None else {"position_ids": position_ids}
        hidden = self.backbone(input_ids, attention_mask=attention_mask, **positions).last_hidden_state
        scored = (attention_mask if loss_mask is None else loss_mask)[:, 1:].bool()
        return lm_loss(self.backbone, hidden[:, :-1], input_ids[:, 1:], scored)  # t predicts t + 1

    # --- data ----------------------------------------------------------------------------

    def build_dataset(self, chats: Iterable, source: str = "dataset"):
        """Features for :meth:`collate` from chats: records of any of the three formats,
        message lists or :class:`~s2s_tasks.sft_data.Conversation` s (a chat with no assistant
        turn, or one whose assistant turn the template drops, is an error naming its line).
        A list gives a list, any other iterable is encoded lazily; with ``pack``, packed rows."""

        def encode(example, tally: Counter) -> list[dict]:
            chat = conversation(example)
            try:
                return self.encode_chat(chat.messages, tally)
            except ValueError as exc:
                raise ValueError(f"{chat.where}: {exc}" if chat.where else str(exc)) from None

        def report(tally: Counter, count: int) -> None:
            if tally["shortened"]:
                logger.warning("%s: %d chats longer than max_length=%d tokens lost their oldest turns to fit",
                               source, tally["shortened"], self.max_length)
            if tally["skipped"]:
                logger.warning("%s: %d chats longer than max_length=%d tokens were skipped (overlong=%s)",
                               source, tally["skipped"], self.max_length, self.overlong)

        features = build_features(chats, encode, report, source, what="chats")
        if not self.pack:
            return features
        return list(pack_rows(features, self.max_length)) if isinstance(features, list) else \
            PackedRows(features, self.max_length)

    def encode_chat(self, messages: list[dict], tally: Counter) -> list[dict]:
        """The features of one chat (none when it is skipped), counting in ``tally``."""
        if self.encoder_decoder:
            return [f for index, m in enumerate(messages) if m["role"] == "assistant" and weight(m)
                    for f in self._pair(messages[:index], m["content"], tally)]
        messages, ids, mask = self._fit(messages, self.format.encode, tally)
        if ids is None:
            return []
        loss_mask = [0] + ([1] * (len(ids) - 1) if self.train_on_prompt else mask[1:])  # nothing predicts the first
        turns = [m for m in messages if m["role"] == "assistant"]
        if not all(weight(m) for m in turns):
            for turn, (start, end) in zip(turns, self.format.turn_stretches(messages, mask)):
                if not weight(turn):
                    loss_mask[start:end] = [0] * (end - start)
        return [{"input_ids": ids, "loss_mask": loss_mask}]

    def _pair(self, prompt: list[dict], answer: str, tally: Counter) -> list[dict]:
        _, src, _ = self._fit(prompt, lambda chat: (self.format.prompt(chat), None), tally)
        if src is None:
            return []
        tgt = [self.tokenizer.token_to_id(t) for t in self.tokenizer.tokenize(answer)] + [self.variant.eos_id]
        feature, cut = self.variant.pair(src, tgt, self.max_length)
        tally["answer_cut"] += cut
        return [feature]

    def _fit(self, messages: list[dict], encode, tally: Counter):
        """``(messages, *encode(messages))`` once they fit ``max_length`` (oldest exchanges
        dropped), or ``(messages, None, None)`` when they are skipped."""
        shortened = False
        while True:
            ids, mask = encode(messages)
            if len(ids) <= self.max_length:
                tally["shortened"] += shortened
                return messages, ids, mask
            shorter = drop_oldest_turn(messages) if self.overlong == "drop_oldest" else None
            if shorter is None:
                tally["skipped"] += 1
                return messages, None, None
            messages, shortened = shorter, True

    def collate(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Pad on the right. Decoders: ``loss_mask``; packed rows get the block-diagonal causal
        ``attention_mask`` [B, L, L] and their ``position_ids``."""
        pads = {"input_ids": self.pad_id, "decoder_input_ids": self.pad_id}
        if "segment_ids" in features[0]:
            batch = pad_batch(features, pads)
            batch["attention_mask"] = packed_causal_mask(batch.pop("segment_ids"))
            return batch
        return pad_batch([{**f, "attention_mask": [1] * len(f["input_ids"])} for f in features], pads)

    # --- inference -----------------------------------------------------------------------

    def check_input(self, item) -> None:
        self.prompt_messages(item)

    def prompt_messages(self, item) -> list[dict]:
        """The messages of one input: a question (a string), a list of messages, or a record
        of one of the three formats (its messages before the last assistant turn)."""
        if isinstance(item, str):
            if not item.strip():
                raise ValueError("the question is empty")
            return [{"role": "user", "content": item}]
        if isinstance(item, Mapping):
            return Conversation(to_messages(item)).prompt
        if isinstance(item, (list, tuple)):
            return to_messages({"messages": list(item)})
        raise TypeError(f"expected a question (a string) or a list of messages, got {type(item).__name__} {item!r:.60}")

    def input_from_messages(self, messages: Sequence[dict]) -> list[dict]:
        """The chat of OpenAI-style ``messages`` (``/v1/chat/completions``)."""
        return to_messages({"messages": list(messages)})

    def predict(self, inputs: Sequence, max_new_tokens: int = 64, beam_size: int = 1, batch_size: int = 32,
                **options) -> list[str]:
        """The answer to each input (a question, or a list of messages). ``options`` go to
        :func:`s2s.generation.generate` (``do_sample``, ``top_p``, ``temperature``, ``seed``…)."""
        if isinstance(inputs, (str, Mapping)):
            raise TypeError("predict takes a list of inputs; wrap a single question in a list")
        options.setdefault("banned_token_ids", self.banned_ids)
        answers, cut = [], 0
        with self.inference():
            for start in range(0, len(inputs), batch_size):
                prompts = []
                for item in inputs[start : start + batch_size]:
                    ids, was_cut = self.prompt_ids(item, max_new_tokens)
                    prompts.append(ids)
                    cut += was_cut
                generation, prompt = self._generation_inputs(prompts)
                rows = generate(self.variant.decoder(self.backbone, max_new_tokens), generation, num_beams=beam_size,
                                max_new_tokens=max_new_tokens, eos_token_id=self.stop_ids, **prompt, **options)
                answers.extend(self.tokenizer.decode(row) for row in rows)
        if cut:
            logger.warning("%d prompts did not fit beside max_new_tokens=%d: their beginning was cut", cut, max_new_tokens)
        return answers

    def prompt_ids(self, item, max_new_tokens: int) -> tuple[list[int], bool]:
        """The prompt ids of one input within the room ``max_new_tokens`` leaves (oldest
        exchanges dropped, then the end kept), and whether its beginning was cut."""
        limit, room = self.variant.source_room(self.max_length, max_new_tokens)
        if not 0 < max_new_tokens <= limit:
            raise ValueError(f"max_new_tokens must be between 1 and {limit}, got {max_new_tokens}")
        messages = self.prompt_messages(item)
        while True:
            ids = self.format.prompt(messages)
            shorter = drop_oldest_turn(messages) if len(ids) > room else None
            if shorter is None:
                return ids[-room:], len(ids) > room
            messages = shorter

    def _generation_inputs(self, prompts: list[list[int]], max_new_tokens=None) -> tuple[dict, dict]:
        return self.variant.generation_inputs(prompts, self.pad_id, self.device, max_new_tokens)

    def stream_prediction(self, item, max_new_tokens: int = 64, **options) -> Iterator[str]:
        if max(options.get("beam_size", 1), options.get("num_beams", 1)) > 1:  # known at the end only
            yield from super().stream_prediction(item, max_new_tokens=max_new_tokens, **options)
            return
        options.setdefault("banned_token_ids", self.banned_ids)
        ids, cut = self.prompt_ids(item, max_new_tokens)
        if cut:
            logger.warning("the prompt did not fit beside max_new_tokens=%d: its beginning was cut", max_new_tokens)
        generation, prompt = self._generation_inputs([ids])
        pieces = stream(self.variant.decoder(self.backbone, max_new_tokens), generation, self.tokenizer.decode_stream(),
                        max_new_tokens=max_new_tokens, eos_token_id=self.stop_ids, **prompt, **options)
        while True:  # eval mode and no gradients while a piece is made, not while the caller runs
            with self.inference():
                piece = next(pieces, None)
            if piece is None:
                return
            yield piece

    def generation_request(self, item, max_new_tokens: int) -> GenerationRequest:
        ids, cut = self.prompt_ids(item, max_new_tokens)
        if cut:
            raise ValueError(f"the chat does not fit the model's context of {self.max_length} tokens with "
                             f"max_tokens={max_new_tokens}, even without its earlier turns")
        generation, _ = self._generation_inputs([ids], max_new_tokens)
        return GenerationRequest(generation, ids, list(self.stop_ids), list(self.banned_ids))

    def decoder(self, max_new_tokens: int):
        """The :class:`s2s.generation.Decoder` of the backbone's kind."""
        return self.variant.decoder(self.backbone, max_new_tokens)

    # --- s2s train / predict / serve -----------------------------------------------------

    generative = True
    files = ChatFiles()

    def predict_json(self, inputs, max_new_tokens: int = 64, beam_size: int = 1, **options) -> list[str]:
        """The answer to each input (:meth:`predict`)."""
        return self.predict(list(inputs), max_new_tokens, beam_size, **options)


# --- packing -------------------------------------------------------------------------------


def pack_rows(features: Iterable[dict], max_length: int) -> Iterator[dict]:
    """Rows of at most ``max_length`` tokens, each the features that follow one another in
    ``features`` while they fit: ``input_ids`` and ``loss_mask`` joined, ``position_ids``
    restarting at 0 and ``segment_ids`` 1, 2, … per feature."""
    row: list[dict] = []
    for feature in features:
        if row and sum(len(f["input_ids"]) for f in row) + len(feature["input_ids"]) > max_length:
            yield _joined(row)
            row = []
        row.append(feature)
    if row:
        yield _joined(row)


def _joined(row: list[dict]) -> dict:
    joined = {"input_ids": [], "loss_mask": [], "position_ids": [], "segment_ids": []}
    for number, feature in enumerate(row, 1):
        joined["input_ids"] += feature["input_ids"]
        joined["loss_mask"] += feature["loss_mask"]
        joined["position_ids"] += range(len(feature["input_ids"]))
        joined["segment_ids"] += [number] * len(feature["input_ids"])
    return joined


class PackedRows(IterableDataset):
    """:func:`pack_rows` over features encoded lazily, anew on each pass."""

    def __init__(self, features: Iterable[dict], max_length: int):
        self.features, self.max_length = features, max_length

    def __iter__(self) -> Iterator[dict]:
        return pack_rows(self.features, self.max_length)
