"""Multi-turn chat on decoders (GPT-2, CDial-GPT) with data in the LCCC format.

LCCC data: a JSON list of dialogues, each a list of turns whose tokens are separated by
spaces (``[["你 好", "你 好 ， 最 近 怎 么 样"], ...]``); a JSON object with ``"train"`` /
``"valid"`` / ``"test"`` lists is read too. A dialogue becomes::

    [CLS] turn1 [SEP] turn2 [SEP] … turnN [SEP]

(on a Hugging Face tokenizer: its template's leading specials, each turn ended by the eos token).

Speakers alternate. When the vocab has speaker tokens (``[speaker1]``, ``[speaker2]``, as
CDial-GPT's does) each position also gets its speaker's token id as ``token_type_ids``
(embedded with the word embeddings, as CDial-GPT does). The loss covers every turn but the
first (each reply given its history). To reply, the history is cut from the oldest turn
until it fits ``max_length - max_new_tokens``; a single turn that is still too long keeps its end.

    bot = load_model(tokenizer, "gpt2", "chat")
    trainer.train(bot, bot.build_dataset(read_dialogues("train.json")), collate_fn=bot.collate)
    bot.reply([["你好", "你好，最近怎么样"]])  # what speaker 1 says next
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch

from s2s.data import pad_batch
from s2s.task import TinyRun
from s2s.task_files import TaskFiles, read_text_lines

from .causal_lm import CausalLM
from .common import build_features, keep_start_and_end, padding_id, warn_counts

logger = logging.getLogger(__name__)

SPEAKER_TOKENS = ("[speaker1]", "[speaker2]")


def read_dialogues(path: str | os.PathLike, split: str = "train") -> list[list[str]]:
    """Dialogues of an LCCC JSON file (a list, or an object holding ``split``)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from None
    if isinstance(data, dict):
        if split not in data:
            raise ValueError(f"{path}: no {split!r} key; it has {', '.join(map(str, data))}")
        data = data[split]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of dialogues")
    for number, dialogue in enumerate(data, 1):
        if not isinstance(dialogue, list) or not dialogue or not all(isinstance(t, str) and t.strip() for t in dialogue):
            raise ValueError(f"{path}: dialogue {number} must be a non-empty list of non-empty strings")
    return data


class DialogueFiles(TaskFiles):
    """LCCC JSON dialogues (:func:`read_dialogues`); as inputs, each dialogue but its last
    turn, or one turn per line."""

    def read_examples(self, path, options: dict) -> list[list[str]]:
        return read_dialogues(path)

    def example_texts(self, examples) -> list[str]:
        return [turn for dialogue in examples for turn in dialogue]

    def read_inputs(self, path) -> list[list[str]]:
        """Histories: each LCCC dialogue but its last turn (the reply), or one turn per line."""
        if Path(path).read_text(encoding="utf-8-sig").lstrip().startswith(("[", "{")):
            return [dialogue[:-1] or dialogue for dialogue in read_dialogues(path)]
        return [[line] for line in read_text_lines(path)]

    def inputs(self, examples) -> list[list[str]]:
        return [dialogue[:-1] or dialogue for dialogue in examples]


class Chat(CausalLM):
    """Reply to a dialogue history; see the module docstring for the layout."""

    def __init__(self, backbone, tokenizer, *, max_length: int | None = None, speaker_tokens=SPEAKER_TOKENS):
        super().__init__(backbone, tokenizer, max_length=max_length)
        ids = [tokenizer.token_to_id(t) for t in speaker_tokens]
        self.speaker_ids = ids if all(i is not None for i in ids) else None

    @classmethod
    def tiny_runs(cls) -> list[TinyRun]:
        dialogues = [["你 好", "你 好 ， 最 近 怎 么 样"], ["吃 饭 了 吗", "吃 了 ， 你 呢", "还 没 有"]]
        return [TinyRun(dialogues, [["你 好"], ["吃 饭 了 吗", "吃 了"]], predict_options={"max_new_tokens": 5})]

    def encode_turns(self, turns: Sequence[str]) -> tuple[list[int], list[int] | None, list[int]]:
        """``(input_ids, token_type_ids or None, loss_mask)`` of ``[CLS] t1 [SEP] t2 [SEP] …``."""
        ids = list(self.tokenizer.start_ids)  # [CLS]
        types, loss = [0] * len(ids), [0] * len(ids)
        for index, turn in enumerate(turns):
            turn_ids = self.tokenizer.continuation_ids(turn)  # turn [SEP]
            ids += turn_ids
            types += [index % 2] * len(turn_ids)
            loss += [int(index > 0)] * len(turn_ids)
        speaker_types = [self.speaker_ids[t] for t in types] if self.speaker_ids else None
        return ids, speaker_types, loss

    def build_dataset(self, dialogues: Iterable[Sequence[str]], source: str = "dataset"):
        """Features from dialogues; one longer than ``max_length`` loses its oldest turns. A
        list gives a list, any other iterable is encoded lazily (:func:`~s2s_tasks.common.build_features`)."""

        def encode(dialogue, tally: Counter) -> list[dict]:
            turns = list(dialogue)
            ids, types, loss = self.encode_turns(turns)
            while len(ids) > self.max_length and len(turns) > 2:
                turns = turns[1:]
                ids, types, loss = self.encode_turns(turns)
                tally["dropped"] += 1
            feature = {"input_ids": ids[: self.max_length], "loss_mask": loss[: self.max_length]}
            if types is not None:
                feature["token_type_ids"] = types[: self.max_length]
            return [feature]

        report = warn_counts("dropped", "{source}: {dropped} oldest turns were dropped to fit max_length={max_length}",
                             source=source, max_length=self.max_length)
        return build_features(dialogues, encode, report, source, what="dialogues")

    def collate(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        return pad_batch(
            [{**f, "attention_mask": [1] * len(f["input_ids"])} for f in features],
            {"input_ids": padding_id(self.tokenizer)},
        )

    def fit_history(self, history: Sequence[str], max_new_tokens: int):
        """Encoded history cut from the oldest turn to leave room for the reply."""
        if not history:
            raise ValueError("a dialogue history needs at least one turn")
        room = self.max_length - max_new_tokens
        turns = list(history)
        ids, types, _ = self.encode_turns(turns)
        while len(ids) > room and len(turns) > 1:
            turns = turns[1:]
            ids, types, _ = self.encode_turns(turns)
        if len(ids) > room:  # one long turn: keep [CLS] and its end
            start = len(self.tokenizer.start_ids)
            ids = keep_start_and_end(ids, start, room)
            types = keep_start_and_end(types, start, room) if types else None
        # The turn parity restarts at the first kept turn; the reply's speaker follows it.
        next_speaker = len(turns) % 2
        return ids, types, next_speaker

    def reply(self, histories: Sequence[Sequence[str]], max_new_tokens: int = 32, **options) -> list[str]:
        """The next turn of each history (a list of turns, oldest first). ``options`` go to
        :func:`s2s.generation.generate`; sampling (``do_sample=True, top_p=0.9``) gives
        livelier replies than greedy search."""
        if histories and isinstance(histories[0], str):
            raise TypeError("reply takes a list of histories, each a list of turns")
        fitted = [self.fit_history(h, max_new_tokens) for h in histories]
        prompts = [ids for ids, _, _ in fitted]
        types = [t for _, t, _ in fitted] if self.speaker_ids else None
        next_types = [self.speaker_ids[s] for _, _, s in fitted] if self.speaker_ids else None
        return self._generate(prompts, max_new_tokens, options, types, next_types)

    predict = reply  # every task's inference call

    def stream_reply(self, history: Sequence[str], max_new_tokens: int = 32, **options) -> Iterator[str]:
        """Yield the next turn of one history piece by piece as it is generated; joined, the
        pieces are ``reply([history], ...)[0]``. Leaving the loop early frees the cache."""
        if isinstance(history, str):
            raise TypeError("stream_reply takes one history: a list of turns")
        ids, types, speaker = self.fit_history(history, max_new_tokens)
        if self.speaker_ids:
            inputs = self.generation_inputs([ids], [types], [self.speaker_ids[speaker]])
        else:
            inputs = self.generation_inputs([ids])
        return self._stream(inputs, max_new_tokens, options)

    def stream_prediction(self, item, **options) -> Iterator[str]:
        if max(options.get("beam_size", 1), options.get("num_beams", 1)) > 1:  # known at the end only
            return super(CausalLM, self).stream_prediction(item, **options)
        return self.stream_reply(item, **options)

    def generation_request(self, item, max_new_tokens: int):
        self.check_input(item)
        ids, types, speaker = self.fit_history(item, max_new_tokens)
        if self.speaker_ids:
            return self._request([ids], [types], [self.speaker_ids[speaker]])
        return self._request([ids])

    def input_from_messages(self, messages: Sequence[dict]) -> list[str]:
        """The history of OpenAI-style ``messages``: the user and assistant turns in order (a
        system message has no place in the LCCC layout and is left out)."""
        return [m["content"] for m in messages if m["role"] != "system"]

    # --- files (s2s train / predict / serve) ---------------------------------------------

    files = DialogueFiles()

    def check_input(self, item) -> None:
        if not (isinstance(item, list) and item and all(isinstance(t, str) and t.strip() for t in item)):
            raise TypeError(f"expected a history: a non-empty list of turns (strings), got {item!r:.60}")

    def predict_json(self, inputs, max_new_tokens: int = 32, beam_size: int = 1, **options) -> list[str]:
        """The reply to each history (:meth:`reply`)."""
        return self.reply(list(inputs), max_new_tokens, num_beams=beam_size, **options)

