"""Hugging Face tokenizer folders against transformers' AutoTokenizer on the same folder.

Byte-level BPE tokenizers are trained here with the ``tokenizers`` library using Qwen2's and
Llama 3's pre-tokenizer settings and special tokens (s2s.testing.hf_tokenizers), on generated
Chinese/latin text; ids, offsets, decode, padding and chat templates must equal transformers'.
The same comparison over every line of ../shared/data is test_hf_tokenizer_shared_data.py.
"""

from __future__ import annotations

import random
import re
import shutil
import sys

import pytest

from s2s import Tokenizer
from s2s.testing.hf_tokenizers import byte_level_bpe_folder
from s2s.tokenizer import ChatTemplate, ChatTemplateError, HFTokenizer, TokenizerFileError

transformers = pytest.importorskip("transformers")
pytest.importorskip("jinja2")
STYLES = ("qwen2", "llama3")


def generated_lines(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 400)] + list("，。！？：“”《》（）、")
    latin = ["hello", "World", "it's", "GPT-4", "2024", "12345", "iPhone", "don't", "  ", "\n", "\t", "😀", "ａｂｃ"]
    lines = []
    for _ in range(count):
        parts = [rng.choice(chars) for _ in range(rng.randint(1, 25))]
        for _ in range(rng.randint(0, 4)):
            parts.insert(rng.randint(0, len(parts)), rng.choice(latin) + rng.choice(["", " "]))
        lines.append("".join(parts))
    return lines


SAMPLES = [
    "今天天气不错。", "我用iPhone 12拍的照片，很好看！", "Hello世界, world! 2024年GPT-4发布会", "", "   ",
    "  leading and trailing  ", "line one\nline two\r\n\ttab", "数字1234567890和100,000.5", "😀🙂表情", "ＡＢＣ１２３全角",
    "e\u0301 café naïve", "<|im_start|>user\n你好<|im_end|>", "<|begin_of_text|>嗨<|eot_id|>", "it's don't we'll",
    "龘𠀀字", "人民日报" * 30,
]  # fmt: skip


@pytest.fixture(scope="module", params=STYLES)
def folder(request, tmp_path_factory):
    return byte_level_bpe_folder(tmp_path_factory.mktemp(request.param), generated_lines(400), request.param, 900)


@pytest.fixture(scope="module")
def pair(folder):
    return Tokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)


def test_from_pretrained_reads_the_folder(pair):
    ours, hf = pair
    assert isinstance(ours, HFTokenizer)
    assert len(ours) == len(hf)
    for role in ("bos_token", "eos_token", "pad_token", "unk_token"):
        assert ours.special_tokens_map.get(role) == getattr(hf, role)
    assert (ours.bos_id, ours.eos_id, ours.pad_id) == (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id)
    assert set(ours.special_tokens) == set(hf.all_special_tokens) | {
        t.content for t in hf.backend_tokenizer.get_added_tokens_decoder().values() if t.special
    }
    for index in (0, 5, len(ours) - 1):
        assert ours.id_to_token(index) == hf.convert_ids_to_tokens(index)
        assert ours.token_to_id(ours.id_to_token(index)) == index


@pytest.mark.parametrize("max_length", [None, 4, 16])
def test_ids_offsets_and_decode_equal_transformers(pair, max_length):
    ours, hf = pair
    truncation = {} if max_length is None else {"truncation": True, "max_length": max_length}
    for text in SAMPLES + generated_lines(200, seed=1):
        want = hf(text, return_offsets_mapping=True, **truncation)
        got = ours.encode(text, max_length=max_length)
        assert got.ids == want["input_ids"], text
        assert got.offsets == [tuple(o) for o in want["offset_mapping"]], text
        for skip in (False, True):
            assert ours.decode(got.ids, skip_special_tokens=skip) == hf.decode(want["input_ids"], skip_special_tokens=skip)


def test_pairs_and_padded_batches_equal_transformers(pair):
    ours, hf = pair
    texts, pairs = SAMPLES[:8], SAMPLES[8:16]
    for text, second in zip(texts, pairs):
        assert ours.encode(text, second).ids == hf(text, second)["input_ids"]
    if hf.pad_token is None:
        with pytest.raises(ValueError, match="no pad token"):
            ours.encode_batch(texts)
        return
    for side in ("right", "left"):
        ours.padding_side = hf.padding_side = side
        ours._reset_engines()
        got = ours.encode_batch(texts, max_length=12)
        want = hf(texts, padding=True, truncation=True, max_length=12, return_tensors="pt")
        assert got["input_ids"].tolist() == want["input_ids"].tolist()
        assert got["attention_mask"].tolist() == want["attention_mask"].tolist()
    ours.padding_side = hf.padding_side = "right"
    ours._reset_engines()


def test_save_reloads_in_s2s_and_transformers(pair, tmp_path):
    ours, hf = pair
    ours.add_special_tokens(["<|tool_call|>"])
    ours.save(tmp_path)
    again, theirs = Tokenizer.from_pretrained(tmp_path), transformers.AutoTokenizer.from_pretrained(tmp_path)
    text = "你好<|tool_call|>hello<|im_end|>"
    assert again.encode(text).ids == ours.encode(text).ids == theirs(text)["input_ids"]
    assert again.token_to_id("<|tool_call|>") == len(hf)
    messages = [{"role": "user", "content": "你好"}]
    assert again.apply_chat_template(messages, tokenize=False) == ours.apply_chat_template(messages, tokenize=False)
    assert again.special_tokens_map == ours.special_tokens_map


def test_decode_stream_emits_whole_characters_joining_to_decode(pair):
    ours, _ = pair
    rng = random.Random(3)
    held_back = 0
    for text in generated_lines(100, seed=4) + SAMPLES:
        ids = ours.encode(text).ids
        ids = ids + [rng.randrange(len(ours)) for _ in range(rng.randint(0, 3))]  # odd ids too
        for skip in (True, False):
            stream, pieces = ours.decode_stream(skip_special_tokens=skip), []
            for token in ids:
                piece = stream.step(token)
                held_back += piece is None
                if piece is not None:
                    pieces.append(piece)
            pieces.append(stream.flush() or "")
            full = ours.decode(ids, skip_special_tokens=skip)
            assert "".join(pieces) == full
            if "\ufffd" not in full:
                assert not any("\ufffd" in p for p in pieces)
    assert held_back > 0  # some Chinese characters did span several byte-level tokens


def test_decode_stream_of_wordpiece_joins_to_decode():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"今天气不错。", "hello", "world", "##s", "2024"]
    tok = Tokenizer({t: i for i, t in enumerate(vocab)})
    ids = tok.encode("今天 hello worlds 2024，不错。").ids + tok.encode("hello").ids
    stream = tok.decode_stream()
    pieces = [p for p in map(stream.step, ids) if p is not None]
    assert "".join(pieces) == tok.decode(ids) == "今天hello worlds 2024[UNK]不错。hello"


def test_a_tokenizer_json_tokenizers_refuses_names_the_file(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nonsense"}}', encoding="utf-8")
    # the file, then the library's reason (where in the JSON it gave up)
    with pytest.raises(TokenizerFileError, match=r"tokenizer\.json: the tokenizers library .* refuses this file: "
                                                 r".*line 1 column \d+"):
        Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=re.escape(str(tmp_path / "tokenizer.json")) + r".*key must be a string"):
        Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither vocab.txt nor tokenizer.json"):
        Tokenizer.from_pretrained(tmp_path / "nothing")


# ------------------------------------------------------------------ chat templates
DEFAULT_SYSTEM_TEMPLATE = (  # Llama-2 style: a default system message, bos/eos, raise_exception
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set messages = messages[1:] %}{% else %}{% set system = '你是一个乐于助人的助手。' %}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 %}{% set content = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token | default('') + '[INST] ' + content | trim + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content | trim + ' ' + eos_token | default('') }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ ' ' }}{% endif %}"
)
GENERATION_TEMPLATE = (  # ChatML with {% generation %} around assistant turns
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\\n' }}{% else %}{{ message['content'] + '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHATS = [
    [{"role": "user", "content": "你好"}],
    [{"role": "system", "content": "你是客服。"}, {"role": "user", "content": "订单到哪了？"}],
    [
        {"role": "user", "content": " 今天天气怎么样？ "},
        {"role": "assistant", "content": "晴，25°C。"},
        {"role": "user", "content": "明天呢\n"},
    ],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "谢谢"},
        {"role": "assistant", "content": "不客气！"},
    ],
]
TOOLS = [{"type": "function", "function": {"name": "天气", "description": "查询天气", "parameters": {"type": "object", "properties": {"城市": {"type": "string"}}}}}]


def with_template(folder, tmp_path, template: str):
    """The folder's tokenizers with ``template`` as the chat template (both libraries)."""
    ours = Tokenizer.from_pretrained(folder)
    ours.chat_template = ChatTemplate(template, "test template")
    ours.save(tmp_path)
    return Tokenizer.from_pretrained(tmp_path), transformers.AutoTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize("template", ["folder", "default_system", "generation"])
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_chat_templates_render_as_transformers(folder, tmp_path, template, add_generation_prompt):
    if template == "folder":  # Qwen2.5's for qwen2, Llama 3.1's for llama3
        ours, hf = Tokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)
    else:
        ours, hf = with_template(folder, tmp_path, DEFAULT_SYSTEM_TEMPLATE if template == "default_system" else GENERATION_TEMPLATE)
    chats = CHATS if template != "default_system" else [c for c in CHATS if len(c) != 5]
    for messages in chats:
        options = dict(add_generation_prompt=add_generation_prompt)
        want = hf.apply_chat_template(messages, tokenize=False, **options)
        assert ours.apply_chat_template(messages, tokenize=False, **options) == want
        assert ours.apply_chat_template(messages, **options) == hf.apply_chat_template(messages, return_dict=False, **options)
    if template == "folder":
        tools = dict(tools=TOOLS, add_generation_prompt=add_generation_prompt)
        assert ours.apply_chat_template(CHATS[1], tokenize=False, **tools) == hf.apply_chat_template(CHATS[1], tokenize=False, **tools)


def test_assistant_masks(folder, tmp_path):
    ours, hf = with_template(folder, tmp_path, GENERATION_TEMPLATE)
    for messages in CHATS:
        want = hf.apply_chat_template(messages, return_assistant_tokens_mask=True, return_dict=True)
        got = ours.apply_chat_template(messages, return_assistant_tokens_mask=True)
        assert got["input_ids"] == want["input_ids"] and got["assistant_masks"] == want["assistant_masks"]
    # Without {% generation %}: each assistant turn found by rendering up to it (Qwen2.5 / Llama 3.1).
    plain = Tokenizer.from_pretrained(folder)
    got = plain.apply_chat_template(CHATS[3], return_assistant_tokens_mask=True)
    kept = [i for i, m in zip(got["input_ids"], got["assistant_masks"]) if m]
    end = "<|im_end|>\n" if folder.name.startswith("qwen2") else "<|eot_id|>"
    assert plain.decode(kept, skip_special_tokens=False) == f"4{end}不客气！{end}"


def test_chat_template_errors(folder, tmp_path, monkeypatch):
    ours, _ = with_template(folder, tmp_path, DEFAULT_SYSTEM_TEMPLATE)
    twice = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(ChatTemplateError, match=r"tokenizer_config\.json chat_template: Conversation roles must alternate"):
        ours.apply_chat_template(twice)
    jinja = tmp_path / "jinja"  # the template in its own file (transformers >= 4.43 saves it there)
    shutil.copytree(folder, jinja)
    (jinja / "chat_template.jinja").write_text(DEFAULT_SYSTEM_TEMPLATE, encoding="utf-8")
    with pytest.raises(ChatTemplateError, match=re.escape(str(jinja / "chat_template.jinja")) + ": Conversation roles must alternate"):
        Tokenizer.from_pretrained(jinja).apply_chat_template(twice)
    qwen = Tokenizer.from_pretrained(folder)
    if folder.name.startswith("qwen2"):  # Qwen2.5's template skips roles it does not know
        with pytest.raises(ChatTemplateError, match=r"drops messages\[1\]: its role 'narrator'"):
            qwen.apply_chat_template([{"role": "user", "content": "你好"}, {"role": "narrator", "content": "很久以前"}])
    with pytest.raises(ChatTemplateError, match=r"messages\[0\]('s| has) list content.*this template takes string content"):
        qwen.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "你好"}]}])
    with pytest.raises(ChatTemplateError, match=r"messages\[0\] has no string 'role'"):
        qwen.apply_chat_template([{"content": "你好"}])
    with pytest.raises(ValueError, match="has no chat template"):
        Tokenizer({t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])}).apply_chat_template(CHATS[0])
    from s2s.tokenizer import chat

    chat._compile.cache_clear()
    monkeypatch.setitem(sys.modules, "jinja2", None)
    with pytest.raises(ImportError, match=r"s2s-core\[chat\]"):
        qwen.apply_chat_template([{"role": "user", "content": "再见"}])
    chat._compile.cache_clear()
