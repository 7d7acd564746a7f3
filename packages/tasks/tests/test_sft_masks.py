"""SFT label masks against masks computed by hand, for each data format and each template.

Templates: Qwen2.5's and Llama 3.1's (tiny byte-level BPE folders trained here with their
tokenizer settings, s2s.testing.hf_tokenizers) and the default template (on a BERT vocabulary
and on the Qwen-style BPE without its template). The expected mask is built from the rendered
text alone: each assistant turn's span is found by searching the text for the turn's content
followed by the template's end-of-turn token, and a token is scored when its character offsets
(from the ``tokenizers`` / transformers tokenizer of the same files, not s2s) overlap a span.
"""

from __future__ import annotations

import json

import pytest
import torch

from s2s import Tokenizer, load_model

pytest.importorskip("s2s_gpt2", reason="needs s2s-models-gpt2")
pytest.importorskip("jinja2")
tokenizers = pytest.importorskip("tokenizers")
from s2s.testing.hf_tokenizers import byte_level_bpe_folder  # noqa: E402
from s2s_tasks.common import DataError  # noqa: E402
from s2s_tasks.sft_data import read_conversations  # noqa: E402

RECORDS = {
    "openai": {"messages": [
        {"role": "system", "content": "你是助手。"}, {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好！有什么可以帮你？"}, {"role": "user", "content": "把 abc 倒过来"},
        {"role": "assistant", "content": "cba"}]},
    "sharegpt": {"conversations": [
        {"from": "human", "value": "1+1等于几？"}, {"from": "gpt", "value": "等于2。"},
        {"from": "human", "value": "再加3呢"}, {"from": "gpt", "value": "5"}]},
    "alpaca": {"instruction": "把下面的数字相加", "input": "12 34", "output": "46", "system": "只回答数字。"},
}  # fmt: skip
END_OF_TURN = {"qwen2": "<|im_end|>", "llama3": "<|eot_id|>", "default": "[SEP]", "default-bpe": "<|im_end|>"}
GPT2_TINY = dict(n_embd=32, n_layer=2, n_head=4, n_positions=256, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def texts() -> list[str]:
    lines = [m["content"] for r in RECORDS.values() for m in r.get("messages", [])]
    lines += [t["value"] for t in RECORDS["sharegpt"]["conversations"]] + list(RECORDS["alpaca"].values())
    return lines * 3 + ["system user assistant 系统 用户 助手：", "Cutting Knowledge Date Today"]


@pytest.fixture(scope="module", params=sorted(END_OF_TURN))
def template(request, tmp_path_factory):
    """``(name, s2s tokenizer, reference offsets(text) -> [(start, end)], ids(text))``."""
    name = request.param
    if name == "default":
        tokenizer = Tokenizer.build_vocab(texts(), min_frequency=1)
        folder = tmp_path_factory.mktemp("bert")
        tokenizer.save(folder)
        transformers = pytest.importorskip("transformers")
        reference = transformers.BertTokenizerFast(str(folder / "vocab.txt"))
        def encode(text):  # noqa: E306
            enc = reference(text, add_special_tokens=False, return_offsets_mapping=True)
            return enc["input_ids"], enc["offset_mapping"]
        return name, tokenizer, encode
    style = "qwen2" if name == "default-bpe" else name
    folder = byte_level_bpe_folder(tmp_path_factory.mktemp(name), texts(), style, 600)
    tokenizer = Tokenizer.from_pretrained(folder)
    if name == "default-bpe":
        tokenizer.chat_template = None
    engine = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    def encode(text):  # noqa: E306
        enc = engine.encode(text, add_special_tokens=False)
        return enc.ids, enc.offsets
    return name, tokenizer, encode


def sft(tokenizer, **options):
    torch.manual_seed(0)
    return load_model(tokenizer, "gpt2", "sft", config=GPT2_TINY, **options)


def spans_by_hand(text: str, answers: list[str], end: str, trim: bool) -> list[tuple[int, int]]:
    """Each answer's span: its content (trimmed where the template trims) and the end-of-turn token."""
    spans, position = [], 0
    for answer in answers:
        piece = (answer.strip() if trim else answer) + end
        start = text.index(piece, position)
        spans.append((start, start + len(piece)))
        position = start + len(piece)
    return spans


def overlapping(offsets, spans) -> list[int]:
    return [int(any(start < end and a < end and start < b for a, b in spans)) for start, end in offsets]


@pytest.mark.parametrize("fmt", sorted(RECORDS))
def test_label_mask_equals_the_mask_by_hand(template, fmt, tmp_path):
    name, tokenizer, encode = template
    path = tmp_path / f"{fmt}.jsonl"
    path.write_text(json.dumps(RECORDS[fmt], ensure_ascii=False) + "\n", encoding="utf-8")
    chat = read_conversations(path)[0]
    model = sft(tokenizer)
    [feature] = model.build_dataset([chat])
    text = tokenizer.apply_chat_template(chat.messages, tokenize=False)
    ids, offsets = encode(text)
    assert feature["input_ids"] == ids
    answers = [m["content"] for m in chat.messages if m["role"] == "assistant"]
    expected = overlapping(offsets, spans_by_hand(text, answers, END_OF_TURN[name], trim=name == "llama3"))
    assert feature["loss_mask"] == expected
    kept = [i for i, m in zip(ids, expected) if m]
    assert tokenizer.decode(kept, skip_special_tokens=True).replace(" ", "") == "".join(answers).replace(" ", "")
    # --train-on-prompt: every token but the first
    [everything] = sft(tokenizer, train_on_prompt=True).build_dataset([chat])
    assert everything["loss_mask"] == [0] + [1] * (len(ids) - 1)


def test_assistant_turns_of_weight_0_have_no_loss(template, tmp_path):
    """OpenAI's ``"weight": 0``: the mask by hand over the spans of the weight-1 answers only;
    with ``train_on_prompt``, every token but the first and those of the weight-0 answers."""
    name, tokenizer, encode = template
    record = json.loads(json.dumps(RECORDS["openai"]))
    record["messages"][2]["weight"] = 0
    path = tmp_path / "weighted.jsonl"
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    chat = read_conversations(path)[0]
    [feature] = sft(tokenizer).build_dataset([chat])
    text = tokenizer.apply_chat_template(chat.messages, tokenize=False)
    ids, offsets = encode(text)
    assert feature["input_ids"] == ids
    answers = [m["content"] for m in chat.messages if m["role"] == "assistant"]
    first, second = spans_by_hand(text, answers, END_OF_TURN[name], trim=name == "llama3")
    assert feature["loss_mask"] == overlapping(offsets, [second])
    assert 0 < sum(feature["loss_mask"]) < sum(sft(tokenizer).build_dataset([RECORDS["openai"]])[0]["loss_mask"])
    [everything] = sft(tokenizer, train_on_prompt=True).build_dataset([chat])
    assert everything["loss_mask"] == [0] + [1 - m for m in overlapping(offsets, [first])[1:]]


def test_the_default_template_is_saved_and_reloaded(template, tmp_path):
    name, tokenizer, _ = template
    model = sft(tokenizer)
    model.save_pretrained(tmp_path / "saved")
    options = json.loads((tmp_path / "saved" / "s2s_task.json").read_text(encoding="utf-8"))["options"]
    again = load_model(checkpoint=tmp_path / "saved")
    chat = [{"role": "user", "content": "你好"}]
    assert again.prompt_ids(chat, 8) == model.prompt_ids(chat, 8)
    if name.startswith("default"):
        from s2s_tasks.chat_format import DEFAULT_TEMPLATE

        assert options["chat_template"] == DEFAULT_TEMPLATE
        assert again.format.render(chat, add_generation_prompt=True).endswith("用户：\n你好" + END_OF_TURN[name] + "助手：\n")
    else:
        assert "chat_template" not in options  # the tokenizer's own, in tokenizer_config.json
    assert again.stop_ids == model.stop_ids and tokenizer.token_to_id(END_OF_TURN[name]) in model.stop_ids


def test_an_assistant_turn_the_template_drops_is_named_by_line(tmp_path):
    tokenizer = Tokenizer.build_vocab(texts(), min_frequency=1)
    drops_answers = "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}[SEP]{% endif %}{% endfor %}"
    model = sft(tokenizer, chat_template=drops_answers)
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(RECORDS["openai"], ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.jsonl, line 1: the chat template .* drops messages\[2\] \(an assistant turn\)"):
        model.build_dataset(read_conversations(path), source=str(path))


def test_over_long_chats_lose_their_oldest_turns_or_are_skipped(caplog):
    tokenizer = Tokenizer.build_vocab(texts(), min_frequency=1)
    chat = RECORDS["openai"]["messages"]
    full = len(sft(tokenizer).build_dataset([chat])[0]["input_ids"])
    model = sft(tokenizer, max_length=full - 1)
    with caplog.at_level("WARNING"):
        [feature] = model.build_dataset([chat])
    expected = [chat[0], *chat[3:]]  # the system turn stays, the first exchange goes
    assert feature["input_ids"] == tokenizer.apply_chat_template(expected)
    assert "1 chats longer than max_length" in caplog.text and "lost their oldest turns" in caplog.text
    caplog.clear()
    skipping = sft(tokenizer, max_length=full - 1, overlong="skip")
    with caplog.at_level("WARNING"):
        assert len(skipping.build_dataset([chat, chat[:3]])) == 1
    assert "1 chats longer than max_length" in caplog.text and "were skipped" in caplog.text
    with pytest.raises(DataError, match="is empty"):
        skipping.build_dataset([chat])
