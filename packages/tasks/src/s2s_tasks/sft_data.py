"""Instruction-tuning data: the OpenAI ``messages``, ShareGPT and Alpaca formats, read as chats.

One record per line (JSON lines), or one JSON array of records. The format is detected from
the first record and every other record of the file must have it; a record of another format,
or of none, is refused naming the file and line::

    {"messages": [{"role": "system", "content": "…"}, {"role": "user", "content": "…"},
                  {"role": "assistant", "content": "…"}]}                         OpenAI
    {"conversations": [{"from": "human", "value": "…"}, {"from": "gpt", "value": "…"}],
     "system": "…"}                                                                  ShareGPT
    {"instruction": "…", "input": "…", "output": "…", "system": "…",
     "history": [["earlier question", "earlier answer"]]}                           Alpaca

Each becomes a :class:`Conversation`: ``messages`` with the roles ``system``, ``user`` and
``assistant`` (OpenAI's ``developer`` is a system turn; ShareGPT's ``human`` / ``gpt`` are user /
assistant; Alpaca's user turn is ``instruction``, then a newline and ``input`` when there is
one). Content given as OpenAI text parts is joined. A training record needs an assistant turn
with text; turns after the last assistant turn are left out (nothing would learn from them).

OpenAI's per-message ``weight`` (as in its fine-tuning format) is read on assistant turns:
``"weight": 0`` keeps the turn as context but puts no loss on it, ``1`` (the default) trains on
it; any other value, or a weight on another role, is refused naming the line. Such a turn keeps
its ``weight`` key in the message; a training record needs an assistant turn of weight 1, and
turns after the last one are left out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from s2s.task_files import TaskFiles, read_text_lines

from .chat_format import DEFAULT_ROLE_TEXTS
from .common import DataError, json_lines
from .metrics.generation import generation_metrics

OPENAI, SHAREGPT, ALPACA = "OpenAI messages", "ShareGPT", "Alpaca"
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
SHAREGPT_ROLES = {
    "system": "system", "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "model": "assistant", "bot": "assistant",
}  # fmt: skip


@dataclass
class Conversation:
    """One chat: ``messages`` (``{"role", "content"}``, roles system / user / assistant) and
    where it was read (``"train.jsonl, line 3"``; empty for one given in Python)."""

    messages: list[dict]
    where: str = field(default="", compare=False)

    @property
    def prompt(self) -> list[dict]:
        """The messages before the last assistant turn: what a model answers (``s2s predict``)."""
        last = max((i for i, m in enumerate(self.messages) if m["role"] == "assistant"), default=len(self.messages))
        return self.messages[:last]

    @property
    def answer(self) -> str | None:
        """The last assistant turn's text (the gold answer to :attr:`prompt`), or ``None``."""
        answers = [m["content"] for m in self.messages if m["role"] == "assistant"]
        return answers[-1] if answers else None


def detect_format(record: Mapping) -> str | None:
    """The format of one record (:data:`OPENAI`, :data:`SHAREGPT`, :data:`ALPACA`) or ``None``."""
    if "messages" in record:
        return OPENAI
    if "conversations" in record:
        return SHAREGPT
    if "instruction" in record:
        return ALPACA
    return None


def to_messages(record: Mapping, fmt: str | None = None) -> list[dict]:
    """The messages of one record (of ``fmt``, detected when not given); a ValueError says
    what is wrong with it."""
    fmt = fmt or detect_format(record)
    if fmt is None:
        keys = ", ".join(map(repr, record)) or "none"
        raise ValueError(
            f"not an SFT record: expected 'messages' (OpenAI), 'conversations' (ShareGPT) or "
            f"'instruction' / 'output' (Alpaca); its keys are {keys}"
        )
    return {OPENAI: _openai, SHAREGPT: _sharegpt, ALPACA: _alpaca}[fmt](record)


def conversation(example, where: str = "") -> Conversation:
    """A :class:`Conversation` for training from a record of any format, a message list or a
    Conversation; a ValueError names what is wrong (``where`` first when given)."""
    if isinstance(example, Conversation):
        return example
    try:
        messages = to_messages(example if isinstance(example, Mapping) else {"messages": example})
        return Conversation(trainable(messages), where)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}" if where else str(exc)) from None


def trainable(messages: list[dict]) -> list[dict]:
    """``messages`` through their last assistant turn trained on (weight 1); a ValueError when
    there is none or when an assistant turn has no text."""
    answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if not answers:
        roles = ", ".join(m["role"] for m in messages)
        raise ValueError(f"no assistant turn (its turns: {roles}), so nothing to train on: add the answer")
    for index in answers:
        if not messages[index]["content"].strip():
            raise ValueError(f"messages[{index}] is an assistant turn without text: nothing to train on")
    trained = [i for i in answers if weight(messages[i])]
    if not trained:
        turns = ", ".join(f"messages[{i}]" for i in answers)
        raise ValueError(f"every assistant turn ({turns}) has weight 0, so nothing to train on: "
                         "give at least one weight 1 (or no weight)")
    return messages[: trained[-1] + 1]


def weight(message: Mapping) -> int:
    """A message's loss weight: its ``weight`` (0 or 1, assistant turns only), else 1."""
    return message.get("weight", 1)


def read_conversations(path: str | os.PathLike, *, answers: bool = True) -> list[Conversation]:
    """The chats of a JSON-lines file (or a JSON array) in one of the three formats. With
    ``answers`` (training) each needs an assistant turn; a :class:`DataError` names the file and
    line of a record that cannot be used."""
    found, examples = None, []
    for where, record in _records(path):
        fmt = detect_format(record)
        if found is None and fmt is not None:
            found = (fmt, where)
        elif fmt is not None and fmt != found[0]:
            raise DataError(f"{where}: this record is in the {fmt} format but the file's first one is in the "
                            f"{found[0]} format ({found[1]}): one format per file; convert the records to one")
        try:
            messages = to_messages(record, fmt)
            examples.append(Conversation(trainable(messages) if answers else messages, where))
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: {exc}") from None
    if not examples:
        raise DataError(f"{path} has no records (expected JSON lines of OpenAI messages, ShareGPT or Alpaca)")
    return examples


def _records(path) -> Iterator[tuple[str, dict]]:
    """``(where, record)``: JSON lines, or the items of a JSON array."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig") as handle:
            array = handle.read(64).lstrip().startswith("[")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 (byte {exc.start}): save it as UTF-8") from None
    if not array:
        for number, record in json_lines(path):
            yield f"{path}, line {number}", record
        return
    try:
        records = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from None
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise DataError(f"{path}, record {number}: expected a JSON object, got {type(record).__name__}")
        yield f"{path}, record {number}", record


class ChatFiles(TaskFiles):
    """Chats in any of the three formats (:func:`read_conversations`). As inputs: each chat's
    messages before its last assistant turn, or one question per line of a text file. Scored
    by ROUGE-1/2/L and BLEU over characters and the share of exact answers (``exact_match``)."""

    def read_examples(self, path, options: dict) -> list[Conversation]:
        return read_conversations(path)

    def example_texts(self, examples) -> list[str]:
        return [m["content"] for c in examples for m in c.messages] + list(DEFAULT_ROLE_TEXTS)

    def read_inputs(self, path) -> list:
        """Message lists (a chat file's prompts), or the lines of a text file (one question each)."""
        with Path(path).open(encoding="utf-8-sig") as handle:
            start = handle.read(64).lstrip()[:1]
        if start in ("{", "["):
            return [c.prompt for c in read_conversations(path, answers=False)]
        return read_text_lines(path)

    def inputs(self, examples) -> list:
        return [conversation(e).prompt for e in examples]

    def score(self, predictions, examples) -> dict[str, float]:
        answers = [conversation(e).answer for e in examples]
        exact = sum(p.strip() == a.strip() for p, a in zip(predictions, answers)) / max(len(answers), 1)
        return {**generation_metrics(predictions, answers), "exact_match": exact}


# --- the formats ---------------------------------------------------------------------------


def _openai(record: Mapping) -> list[dict]:
    messages = _messages(record, "messages", ("role", "content"), ROLES)
    for index, (message, turn) in enumerate(zip(messages, record["messages"])):
        if "weight" in turn:
            message["weight"] = _weight(turn["weight"], index, message["role"])
    return messages


def _weight(value, index: int, role: str) -> int:
    """OpenAI's per-message ``weight``: 0 (no loss on this assistant turn) or 1."""
    if role != "assistant":
        raise ValueError(f"messages[{index}] is a {role} turn with a weight: only assistant turns take one "
                         "(0: no loss on that turn, 1: the default)")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in (0, 1):
        raise ValueError(f"messages[{index}].weight is {value!r}: it must be 0 (no loss on this assistant turn) "
                         "or 1 (trained on, the default)")
    return int(value)


def _sharegpt(record: Mapping) -> list[dict]:
    return _system(record) + _messages(record, "conversations", ("from", "value"), SHAREGPT_ROLES)


def _alpaca(record: Mapping) -> list[dict]:
    messages = _system(record)
    history = record.get("history") or []
    if not isinstance(history, list):
        raise ValueError("'history' must be a list of [question, answer] pairs")
    for index, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise ValueError(f"history[{index}] must be a [question, answer] pair")
        messages += [{"role": "user", "content": _text(pair[0], f"history[{index}][0]")},
                     {"role": "assistant", "content": _text(pair[1], f"history[{index}][1]")}]
    question = _text(record.get("instruction"), "instruction")
    extra = record.get("input") or ""
    if extra:
        question = f"{question}\n{_text(extra, 'input')}"
    messages.append({"role": "user", "content": question})
    if record.get("output") is not None:
        messages.append({"role": "assistant", "content": _text(record["output"], "output")})
    return messages


def _messages(record: Mapping, key: str, fields: tuple[str, str], roles: Mapping[str, str]) -> list[dict]:
    """``record[key]``, a list of turns with a role and a text under ``fields``, as messages
    (``roles`` maps the format's role names to system / user / assistant)."""
    role_key, text_key = fields
    shape = f"{{{role_key}, {text_key}}}"
    turns = record[key]
    if not isinstance(turns, (list, tuple)) or not turns:
        raise ValueError(f"{key!r} must be a non-empty list of {shape} objects")
    messages = []
    for index, turn in enumerate(turns):
        where = f"{key}[{index}]"
        if not isinstance(turn, Mapping):
            raise ValueError(f"{where} must be a {shape} object, got {type(turn).__name__}")
        role = roles.get(turn.get(role_key))
        if role is None:
            raise ValueError(f"{where}.{role_key} is {turn.get(role_key)!r}; SFT reads {', '.join(roles)}")
        messages.append({"role": role, "content": _text(turn.get(text_key), f"{where}.{text_key}")})
    return messages


def _system(record: Mapping) -> list[dict]:
    system = record.get("system")
    return [{"role": "system", "content": _text(system, "system")}] if system else []


def _text(value, name: str) -> str:
    """A string; OpenAI's ``[{"type": "text", "text": …}, …]`` parts joined."""
    if isinstance(value, list) and all(isinstance(p, Mapping) and p.get("type") == "text" for p in value):
        value = "".join(str(p.get("text", "")) for p in value)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    return value


__all__ = ["ALPACA", "OPENAI", "SHAREGPT", "ChatFiles", "Conversation", "conversation", "detect_format", "read_conversations",
           "to_messages", "trainable", "weight"]
