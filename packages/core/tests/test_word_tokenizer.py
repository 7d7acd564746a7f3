"""``Tokenizer(vocab, segmenter="jieba")``: word-first tokenization (T5-PEGASUS), token-exact
against the recipe written out here, with transformers' BertTokenizer for the fallback:

    for each jieba word (HMM off) of the lower-cased text:
        the word itself if it is in the vocab, else BertTokenizer.tokenize(word)

The real-data check (every line of ../shared/data) is test_word_tokenizer_shared_data.py.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys

import pytest
import torch

from s2s.tokenizer import Tokenizer, resolve_tokenizer

# The last two tests run without jieba (s2s-core alone); the others need it and transformers.
needs_jieba = pytest.mark.skipif(
    importlib.util.find_spec("jieba") is None or importlib.util.find_spec("transformers") is None,
    reason="needs jieba (s2s-core[jieba]) and transformers",
)

CHARS = (
    "我你他用拍的照片很好看今天气不错爱中国人民日报新闻发布会北京上海年月号和是在了有一个这"
    "全角字母控制符制表换行零宽咖啡世界标点音乐天安门研究生命起源方法结果"
)
WORDS = ["北京", "天安门", "中国人", "人民日报", "新闻", "发布会", "研究生", "生命", "起源", "今天", "天气", "照片", "全角", "字母"]
PUNCT = "，。！？、；：“”《》（）,.!?;:'\"()[]-+%/#@…"
LATIN = ["iphone", "hello", "world", "gpt", "cafe", "na", "re", "play", "12", "20", "3", "14", "2024"]
PIECES = ["##ive", "##sume", "##s", "##ing", "##24", "##4", "##x", "##1", "##2", "##3"]
EXTRA = list("abcdefghijklmnopqrstuvwxyz0123456789") + list("ａｂｃ１２３") + ["##ｂ", "##ｃ", "##１", "##２", "##３"]

TEXTS = [
    "我用iPhone 12拍的照片，很好看！",
    "今天天气不错。北京天安门",
    "ＡＢＣ１２３全角字母",
    "Café naïve résumé 咖啡",
    "控制\x00符\x07和\t制表\r\n换行\u200b零宽\ufeff",
    "",
    "   ",
    "\u3000中国人\xa0人民日报",
    "Hello世界, world! 2024年GPT-4发布会",
    "a" * 120 + " 新闻",
    "龘𠀀字",
    "《人民日报》：北京上海（新闻）…“标点”",
    "研究生命起源的方法和结果",
    "人民日报" * 40,
]


def vocab_tokens() -> list[str]:
    tokens = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    for token in [*CHARS, *WORDS, *PUNCT, *LATIN, *PIECES, *EXTRA]:
        if token not in tokens:
            tokens.append(token)
    return tokens


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(vocab_tokens()) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ours(vocab_file):
    return Tokenizer(vocab_file, segmenter="jieba")


def reference(bert, vocab, text: str) -> list[str]:
    """The recipe: lower-case, jieba without HMM, vocab words whole, BERT for the rest."""
    import jieba

    tokens = []
    for word in jieba.cut(text.lower(), HMM=False):
        tokens += [word] if word in vocab else bert.tokenize(word)
    return tokens


@pytest.fixture(scope="module")
def bert(vocab_file):
    import transformers

    return transformers.BertTokenizer(str(vocab_file), do_lower_case=True)


@needs_jieba
@pytest.mark.parametrize("text", TEXTS)
def test_tokens_equal_the_recipe(ours, bert, text):
    assert ours.tokenize(text) == reference(bert, ours.vocab, text)


@needs_jieba
def test_vocab_words_stay_whole_and_others_fall_back_to_characters(ours):
    assert ours.tokenize("北京天安门很好看") == ["北京", "天安门", "很", "好", "看"]
    assert Tokenizer(ours.vocab).tokenize("北京天安门") == ["北", "京", "天", "安", "门"]


@needs_jieba
@pytest.mark.parametrize("text", [t for t in TEXTS if t.strip()])
def test_offsets_point_at_the_original_text(ours, text):
    encoding = ours.encode(text)
    for token, (start, end), special in zip(encoding.tokens, encoding.offsets, encoding.special_tokens_mask):
        if special or token == "[UNK]":
            continue
        piece = text[start:end].lower()
        assert piece.startswith(token.removeprefix("##")[:1]) or not piece.isascii(), (token, piece)
        assert end > start


@needs_jieba
def test_offsets_of_whole_words(ours):
    text = "今天北京天安门"
    encoding = ours.encode(text)
    assert [text[s:e] for s, e in encoding.offsets[1:-1]] == ["今天", "北京", "天安门"]


def longest_first(a: list[int], b: list[int], room: int) -> tuple[list[int], list[int]]:
    a, b = list(a), list(b)
    while len(a) + len(b) > room:
        if len(a) > len(b):
            a.pop()
        else:
            b.pop()
    return a, b


@needs_jieba
@pytest.mark.parametrize("max_length", [None, 5, 9, 40])
def test_pairs_and_max_length_as_without_a_segmenter(ours, max_length):
    cls, sep = ours.cls_id, ours.sep_id
    for text, pair in [("今天天气不错。", "北京天安门的照片"), ("", "新闻"), ("人民日报" * 10, "北京上海")]:
        a = [ours.token_to_id(t) for t in ours.tokenize(text)]
        b = [ours.token_to_id(t) for t in ours.tokenize(pair)]
        if max_length is not None:
            a, b = longest_first(a, b, max_length - 3)
        encoding = ours.encode(text, pair, max_length=max_length)
        assert encoding.ids == [cls, *a, sep, *b, sep]
        assert encoding.token_type_ids == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    single = ours.encode("人民日报" * 10, max_length=6)
    assert single.tokens == ["[CLS]", "人民日报", "人民日报", "人民日报", "人民日报", "[SEP]"]


@needs_jieba
def test_batch_equals_one_by_one(ours):
    batch = ours.encode_batch(TEXTS, padding=False)
    assert batch["input_ids"] == [ours.encode(t).ids for t in TEXTS]
    padded = ours.encode_batch(TEXTS[:3])
    assert isinstance(padded["input_ids"], torch.Tensor)


@needs_jieba
def test_decode_joins_chinese_without_spaces(ours):
    assert ours.decode(ours.encode("今天北京天安门，hello world！").ids) == "今天北京天安门，hello world！"


@needs_jieba
def test_special_tokens_are_never_split(ours):
    assert ours.tokenize("[MASK]北京[SEP]") == ["[MASK]", "北京", "[SEP]"]


@needs_jieba
def test_undecodable_text_raises_as_without_a_segmenter(ours):
    with pytest.raises(ValueError, match="undecodable character"):
        ours.encode("北京\udcff天安门")
    with pytest.raises(TypeError, match="must be str, got bytes"):
        ours.encode("北京".encode())


@needs_jieba
def test_pickles_saves_and_resolves_with_its_segmenter(ours, tmp_path):
    again = pickle.loads(pickle.dumps(ours))
    assert again.segmenter == "jieba" and again.tokenize("北京天安门") == ["北京", "天安门"]
    ours.save(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["segmenter"] == "jieba"
    assert Tokenizer(tmp_path).tokenize("北京天安门") == ["北京", "天安门"]
    assert resolve_tokenizer(checkpoint=tmp_path).segmenter == "jieba"


@needs_jieba
def test_a_t5_pegasus_tokenizer_config_means_jieba(vocab_file, tmp_path):
    (tmp_path / "vocab.txt").write_bytes(vocab_file.read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5PegasusTokenizer"}))
    assert resolve_tokenizer(checkpoint=tmp_path).tokenize("北京天安门") == ["北京", "天安门"]


@needs_jieba
def test_build_vocab_adds_frequent_jieba_words():
    corpus = ["北京天安门很好看", "我爱北京天安门", "北京的天气", "上海"]
    tokenizer = Tokenizer.build_vocab(corpus, min_frequency=2, segmenter="jieba")
    assert tokenizer.segmenter == "jieba"
    assert "北京" in tokenizer.vocab and "天安门" in tokenizer.vocab and "上海" not in tokenizer.vocab
    assert tokenizer.tokenize("北京天安门的上海") == ["北京", "天安门", "的", "上", "海"]


def test_jieba_is_imported_only_when_asked_for(vocab_file):
    code = (
        "import sys; from s2s.tokenizer import Tokenizer; "
        f"Tokenizer({str(vocab_file)!r}).encode('北京'); assert 'jieba' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_jieba_names_the_extra(vocab_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "jieba", None)
    with pytest.raises(ImportError, match=r'pip install "s2s-core\[jieba\]"'):
        Tokenizer(vocab_file, segmenter="jieba")
    with pytest.raises(ValueError, match="segmenter='pkuseg' is not supported"):
        Tokenizer(vocab_file, segmenter="pkuseg")
