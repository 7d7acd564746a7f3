"""SFT data files: the OpenAI, ShareGPT and Alpaca formats read as the same chats, detected
per file; mixed, unknown and unanswered records refused naming the file and line."""

from __future__ import annotations

import json

import pytest

from s2s_tasks.common import DataError
from s2s_tasks.sft_data import (
    ALPACA,
    OPENAI,
    SHAREGPT,
    ChatFiles,
    detect_format,
    read_conversations,
)

CHAT = [
    {"role": "system", "content": "你是助手。"},
    {"role": "user", "content": "你好"},
    {"role": "assistant", "content": "你好！有什么可以帮你？"},
    {"role": "user", "content": "计算\n1+1=?"},
    {"role": "assistant", "content": "2"},
]
RECORDS = {
    OPENAI: {"messages": CHAT},
    SHAREGPT: {"system": "你是助手。", "conversations": [
        {"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！有什么可以帮你？"},
        {"from": "human", "value": "计算\n1+1=?"}, {"from": "gpt", "value": "2"}]},
    ALPACA: {"system": "你是助手。", "history": [["你好", "你好！有什么可以帮你？"]], "instruction": "计算",
             "input": "1+1=?", "output": "2"},
}  # fmt: skip


def write_lines(path, records) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("fmt", sorted(RECORDS))
def test_each_format_reads_as_the_same_chat(fmt, tmp_path):
    record = RECORDS[fmt]
    assert detect_format(record) == fmt
    path = write_lines(tmp_path / "train.jsonl", [record, record])
    chats = read_conversations(path)
    assert [c.messages for c in chats] == [CHAT, CHAT]
    assert chats[1].where == f"{path}, line 2"
    assert chats[0].prompt == CHAT[:4] and chats[0].answer == "2"


def test_a_json_array_and_openai_text_parts(tmp_path):
    parts = {"messages": [{"role": "developer", "content": [{"type": "text", "text": "简短"}, {"type": "text", "text": "回答"}]},
                          {"role": "user", "content": "你好"}, {"role": "assistant", "content": "好"},
                          {"role": "user", "content": "还在吗"}]}  # fmt: skip
    path = tmp_path / "train.json"
    path.write_text(json.dumps([parts, RECORDS[OPENAI]], ensure_ascii=False), encoding="utf-8")
    chats = read_conversations(path)
    assert chats[0].messages == [{"role": "system", "content": "简短回答"}, {"role": "user", "content": "你好"},
                                 {"role": "assistant", "content": "好"}]  # the unanswered last turn is left out
    assert chats[1].where == f"{path}, record 2"


def test_mixed_formats_are_refused_naming_the_line(tmp_path):
    path = write_lines(tmp_path / "mixed.jsonl", [RECORDS[OPENAI], RECORDS[OPENAI], RECORDS[ALPACA]])
    with pytest.raises(DataError, match=r"mixed\.jsonl, line 3: this record is in the Alpaca format but the file's first one is in the "
                       r"OpenAI messages format \(.*line 1\)"):
        read_conversations(path)


def test_an_unknown_format_is_refused_naming_the_line(tmp_path):
    path = write_lines(tmp_path / "odd.jsonl", [RECORDS[SHAREGPT], {"prompt": "你好", "completion": "好"}])
    with pytest.raises(DataError, match=r"odd\.jsonl, line 2: not an SFT record.*'prompt', 'completion'"):
        read_conversations(path)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"messages": [{"role": "user", "content": "你好"}]}, "no assistant turn"),
        ({"conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": " "}]}, "assistant turn without text"),
        ({"instruction": "你好"}, "no assistant turn"),
        ({"messages": [{"role": "robot", "content": "x"}]}, r"messages\[0\]\.role is 'robot'"),
        ({"conversations": [{"from": "alien", "value": "x"}]}, r"conversations\[0\]\.from is 'alien'"),
        ({"messages": [{"role": "user", "content": 3}]}, r"messages\[0\]\.content must be a string"),
        ({"messages": [*CHAT[:2], {**CHAT[2], "weight": 0.5}]}, r"messages\[2\]\.weight is 0\.5: it must be 0 .* or 1"),
        ({"messages": [*CHAT[:2], {**CHAT[2], "weight": True}]}, r"messages\[2\]\.weight is True: it must be 0"),
        ({"messages": [*CHAT[:2], {**CHAT[2], "weight": "1"}]}, r"messages\[2\]\.weight is '1': it must be 0"),
        ({"messages": [{**CHAT[1], "weight": 1}, CHAT[2]]}, r"messages\[0\] is a user turn with a weight: only assistant"),
        ({"messages": [*CHAT[:2], {**CHAT[2], "weight": 0}]}, r"every assistant turn \(messages\[2\]\) has weight 0"),
    ],
)
def test_unusable_records_are_named_by_line(record, message, tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", [RECORDS[OPENAI] if "messages" in record else RECORDS[SHAREGPT]
                                               if "conversations" in record else RECORDS[ALPACA], record])
    with pytest.raises(DataError, match=rf"bad\.jsonl, line 2: .*{message}"):
        read_conversations(path)


def test_inputs_for_predict_and_scores(tmp_path):
    files = ChatFiles()
    path = write_lines(tmp_path / "dev.jsonl", [RECORDS[ALPACA], {"instruction": "你好"}])
    assert files.read_inputs(path) == [CHAT[:4], [{"role": "user", "content": "你好"}]]
    text = tmp_path / "questions.txt"
    text.write_text("你好\n\n1+1=?\n", encoding="utf-8")
    assert files.read_inputs(text) == ["你好", "1+1=?"]
    examples = read_conversations(write_lines(tmp_path / "gold.jsonl", [RECORDS[OPENAI]] * 2))
    assert files.inputs(examples) == [CHAT[:4]] * 2
    scores = files.score(["2", "3"], examples)
    assert scores["exact_match"] == 0.5 and scores["rouge-l"] == 0.5


def test_openai_weights_are_kept_and_turns_after_the_last_trained_one_dropped(tmp_path):
    weighted = [*CHAT[:2], {**CHAT[2], "weight": 1.0}, CHAT[3], {**CHAT[4], "weight": 0}]
    path = write_lines(tmp_path / "train.jsonl", [{"messages": weighted}, {"messages": [*CHAT[:2], {**CHAT[2], "weight": 0}, *CHAT[3:]]}])
    first, second = read_conversations(path)
    assert first.messages == [*CHAT[:2], {**CHAT[2], "weight": 1}]  # the weight-0 last answer trains nothing
    assert second.messages == [*CHAT[:2], {**CHAT[2], "weight": 0}, *CHAT[3:]]
    assert second.answer == "2"
