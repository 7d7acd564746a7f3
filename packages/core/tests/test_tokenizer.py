"""s2s.Tokenizer against transformers' BertTokenizerFast on a vocab and texts written here.

The real-data check (every line of ../shared/data with the 21,128-token Chinese BERT vocab)
is bench/tokenizer_parity.py; these tests cover the same rules on small hand-written cases.
"""

from __future__ import annotations

import os
import pickle
import unicodedata

import pytest
import torch

from s2s.tokenizer import Tokenizer, VocabError

UNUSED = ["[unused1]", "[unused2]", "[unused3]"]
CHINESE = (
    "我你他用拍的照片很好看今天气不错爱中国人民日报新闻发布会北京上海年月号和是在了有一个这"
    "全角字母控制符制表换行零宽咖啡世界标点音乐"
)
PUNCT = "，。！？、；：“”《》（）,.!?;:'\"()[]-+%/#@…"
LATIN = ["iphone", "hello", "world", "gpt", "cafe", "na", "re", "play", "12", "20", "3", "14"]
PIECES = ["##ive", "##sume", "##s", "##ing", "##24", "##4", "##x", "##1", "##2", "##3"]
EXTRA = list("abcdefghijklmnopqrstuvwxyz0123456789") + list("ａｂｃ１２３") + ["😀"]
FULLWIDTH_PIECES = ["##ｂ", "##ｃ", "##１", "##２", "##３"]


def vocab_tokens() -> list[str]:
    tokens = ["[PAD]", *UNUSED, "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    for token in [*CHINESE, *PUNCT, *LATIN, *PIECES, *EXTRA, *FULLWIDTH_PIECES]:
        if token not in tokens:
            tokens.append(token)
    return tokens


TEXTS = [
    "我用iPhone 12拍的照片，很好看！",
    "今天天气不错。",
    "ＡＢＣ１２３全角字母",
    "我爱你😀🙂",
    "Café naïve résumé 咖啡",
    "控制\x00符\x07和\t制表\r\n换行\u200b零宽\ufeff",
    "",
    "   ",
    "\u3000中国\xa0人民",
    "Hello世界, world! 2024年GPT-4发布会",
    "a" * 120 + " 新闻",
    "龘𠀀字",
    "[UNK]是[MASK]，[unused1]和[CLS] [cls]",
    "hello" * 3 + " playing plays",
    "《人民日报》：北京上海（新闻）…“标点”",
    "人民日报" * 40,
]
PAIRS = [
    ("今天天气不错。", "我用iPhone 12拍的照片"),
    ("", "新闻"),
    ("新闻", ""),
    ("人民日报" * 10, "北京上海"),
    ("北京", "人民日报" * 10),
    ("中国人民" * 6, "世界" * 9),
]
MAX_LENGTHS = [None, 3, 4, 5, 8, 16, 64]


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("".join(t + "\n" for t in vocab_tokens()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tok(vocab_file):
    return Tokenizer(vocab_file)


@pytest.fixture(scope="module")
def hf(vocab_file):
    """The reference: BertTokenizerFast; [unusedN] made special as s2s does."""
    transformers = pytest.importorskip("transformers")
    return transformers.BertTokenizerFast(vocab=str(vocab_file), extra_special_tokens=UNUSED)


def reference(hf, text, pair=None, max_length=None):
    kwargs = {} if max_length is None else {"truncation": "longest_first", "max_length": max_length}
    # a batch of one: BertTokenizerFast's single call drops an empty pair ("" is falsy), its
    # batch call keeps it as s2s does
    out = hf([text], None if pair is None else [pair], return_offsets_mapping=True,
             return_special_tokens_mask=True, **kwargs)  # fmt: skip
    out = {k: v[0] for k, v in out.items()}
    return {
        "ids": out["input_ids"],
        "token_type_ids": out["token_type_ids"],
        "attention_mask": out["attention_mask"],
        "offsets": [tuple(o) for o in out["offset_mapping"]],
        "tokens": hf.convert_ids_to_tokens(out["input_ids"]),
        "special_tokens_mask": out["special_tokens_mask"],
    }


def as_dict(enc):
    return {k: getattr(enc, k) for k in ("ids", "token_type_ids", "attention_mask", "offsets",
                                         "tokens", "special_tokens_mask")}  # fmt: skip


# ------------------------------------------------------------------ parity
@pytest.mark.parametrize("max_length", [None, 2, 3, 5, 8, 16])
def test_single_texts_match_bert_tokenizer_fast(tok, hf, max_length):
    for text in TEXTS:
        assert as_dict(tok.encode(text, max_length=max_length)) == reference(
            hf, text, max_length=max_length
        ), text


@pytest.mark.parametrize("max_length", MAX_LENGTHS)
def test_pairs_truncate_longest_first_like_bert_tokenizer_fast(tok, hf, max_length):
    for text, pair in PAIRS + [(TEXTS[0], t) for t in TEXTS]:
        assert as_dict(tok.encode(text, pair, max_length=max_length)) == reference(
            hf, text, pair, max_length=max_length
        ), (text, pair)


def test_rules_hand_checked(tok):
    # CJK split, lower-cased, accents stripped, full-width kept as pieces, unknown emoji -> [UNK]
    assert tok.tokenize("我用iPhone 12拍") == ["我", "用", "iphone", "12", "拍"]
    assert tok.tokenize("Café naïve") == ["cafe", "na", "##ive"]
    assert tok.tokenize("ＡＢＣ１２３") == ["ａ", "##ｂ", "##ｃ", "##１", "##２", "##３"]
    assert tok.tokenize("😀🙂") == ["[UNK]"]  # one word, no piece for 🙂: the whole word is lost
    assert tok.tokenize("控\x00制\u200b") == ["控", "制"]
    # specials are whole only as written: "[cls]" is punctuation + an unknown word
    assert tok.tokenize("[unused1][UNK][cls]") == ["[unused1]", "[UNK]", "[", "[UNK]", "]"]
    assert tok.tokenize("a" * 101) == ["[UNK]"]
    enc = tok.encode("中国 人", max_length=3)
    assert enc.tokens == ["[CLS]", "中", "[SEP]"] and enc.offsets == [(0, 0), (0, 1), (0, 0)]
    assert tok.encode("人", "中国").offsets == [(0, 0), (0, 1), (0, 0), (0, 1), (1, 2), (0, 0)]


def test_lower_case_off_matches_reference(vocab_file):
    transformers = pytest.importorskip("transformers")
    tok = Tokenizer(vocab_file, do_lower_case=False)
    hf = transformers.BertTokenizerFast(
        vocab=str(vocab_file), do_lower_case=False, extra_special_tokens=UNUSED
    )
    for text in TEXTS:
        assert as_dict(tok.encode(text)) == reference(hf, text), text


@pytest.mark.parametrize("max_length", [None, 5, 16])
def test_encode_batch_pads_like_bert_tokenizer_fast(tok, hf, max_length):
    kwargs = {} if max_length is None else {"truncation": "longest_first", "max_length": max_length}
    for pairs in (None, [t[::-1] for t in TEXTS]):
        batch = tok.encode_batch(TEXTS, pairs, max_length=max_length)
        expected = hf(TEXTS, pairs, padding=True, return_tensors="pt", **kwargs)
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert batch[key].dtype == torch.long
            assert torch.equal(batch[key], expected[key]), key
    assert tok.pad_id == 0 and (batch["input_ids"] == 0).any()


def test_encode_batch_without_padding_and_empty(tok):
    batch = tok.encode_batch(["中国", "人"], padding=False)
    assert batch["input_ids"] == [tok.encode("中国").ids, tok.encode("人").ids]
    assert tok.encode_batch([])["input_ids"].shape == (0, 0)
    with pytest.raises(TypeError, match="list of texts"):
        tok.encode_batch("中国")
    with pytest.raises(ValueError, match="2 texts but 1 pairs"):
        tok.encode_batch(["中", "国"], ["人"])


def test_encode_plus_counts_special_tokens(tok):
    ids, types = tok.encode_plus("今天天气不错", "很好看", max_length=8)
    assert tok.decode(ids, skip_special_tokens=False).count("[SEP]") == 2
    assert len(ids) == 8 and types == [0, 0, 0, 0, 0, 1, 1, 1]
    assert [tok.id_to_token(i) for i in ids] == [
        "[CLS]",
        "今",
        "天",
        "天",
        "[SEP]",
        "很",
        "好",
        "[SEP]",
    ]


# ------------------------------------------------------------------ decode
ROUND_TRIP = [
    "我用iPhone 12拍的照片，很好看！",
    "今天天气不错。",
    "《人民日报》：北京上海（新闻）…“标点”",
    "2024年GPT-4发布会",
    "Hello世界，Café的音乐",
    "ＡＢＣ１２３全角字母",
    "我爱你😀",
    "3.14%的人",
]


def expected_round_trip(text: str) -> str:
    """BERT normalization written out by hand: lower case, accents stripped."""
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in text if unicodedata.category(c) != "Mn")


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_decode_round_trips_chinese_text(tok, text):
    assert tok.decode(tok.encode(text).ids) == expected_round_trip(text)


def test_decode_spacing_unknowns_and_specials(tok):
    assert tok.decode(tok.encode("hello world 12 3").ids) == "hello world 12 3"
    assert tok.decode(tok.encode("hellos playing").ids) == "hellos playing"
    assert tok.decode(tok.encode("我用龘拍").ids) == "我用[UNK]拍"
    ids = tok.encode_batch(["中国", "中国人民日报"], ["人", "北京"])["input_ids"][0]
    assert tok.decode(ids) == "中国人"  # [CLS] [SEP] [PAD] dropped
    assert tok.decode(ids, skip_special_tokens=False) == "[CLS]中国[SEP]人[SEP]" + "[PAD]" * 5
    assert tok.decode(torch.tensor(tok.encode("[unused1]中[MASK]").ids)) == "中"
    with pytest.raises(ValueError, match="not in the vocab"):
        tok.decode([len(tok) + 5])


# ------------------------------------------------------- save, specials
def test_save_and_load_give_identical_behaviour(tmp_path, vocab_file):
    tok = Tokenizer(vocab_file, do_lower_case=False)
    tok.add_special_tokens(["<S>", "[unused2]"])
    tok.save(tmp_path)
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1] == [
        *vocab_tokens(),
        "<S>",
    ]
    again = Tokenizer(tmp_path)
    assert again.vocab == tok.vocab and again.special_tokens == tok.special_tokens
    for text in TEXTS + ["Hello<S>World"]:
        assert again.encode(text) == tok.encode(text)
    copied = pickle.loads(pickle.dumps(tok))
    assert copied.encode_batch(TEXTS)["input_ids"].equal(tok.encode_batch(TEXTS)["input_ids"])


def test_added_special_tokens_match_reference(vocab_file):
    transformers = pytest.importorskip("transformers")
    tok = Tokenizer(vocab_file)
    assert tok.add_special_tokens(["<S>", "<T>", "[MASK]"]) == 2
    assert tok.token_to_id("<S>") == len(tok) - 2
    hf = transformers.BertTokenizerFast(vocab=str(vocab_file), extra_special_tokens=UNUSED)
    hf.add_special_tokens({"additional_special_tokens": ["<S>", "<T>"]})
    for text in ["北京<S>上海<T>新闻<s>", "<S><S>", *TEXTS]:
        assert as_dict(tok.encode(text)) == reference(hf, text), text
    assert tok.decode(tok.encode("北京<S>上海").ids) == "北京上海"


# ----------------------------------------------------------- build_vocab
CORPUS = [
    "我用iPhone 12拍的照片，很好看！",
    "iPhone很好看，我用iPhone拍照片。",
    "今天的天气不错，Python很好用。",
    "2024年，Python和iPhone都很好。",
]


def test_build_vocab_layout_and_coverage(tmp_path):
    path = tmp_path / "built" / "vocab.txt"
    tok = Tokenizer.build_vocab(CORPUS, path, min_frequency=2, unused=2)
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    assert lines[:7] == ["[PAD]", "[unused1]", "[unused2]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tok.pad_id == 0 and tok.vocab == {t: i for i, t in enumerate(lines)}
    seen_chars = {c for text in CORPUS for c in text.lower() if not c.isspace()}
    assert seen_chars <= set(lines)
    # words seen twice or more are whole tokens; "12" (once) is left to its pieces
    assert {"iphone", "python"} <= set(lines) and "12" not in lines and "##2" in lines
    assert lines.index("iphone") < lines.index("python")  # iphone is more frequent
    for text in CORPUS:
        assert tok.unk_id not in tok.encode(text).ids
        assert tok.decode(tok.encode(text).ids) == text.lower()
    # the same rules as BERT on the written file
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertTokenizerFast(vocab=str(path))
    for text in CORPUS:
        assert tok.encode(text).ids == hf(text)["input_ids"]


def test_build_vocab_is_deterministic_and_capped(tmp_path):
    first = Tokenizer.build_vocab(CORPUS)
    assert Tokenizer.build_vocab(reversed(CORPUS)).vocab == first.vocab
    capped = Tokenizer.build_vocab(CORPUS, tmp_path, min_frequency=1, max_size=len(first) + 1)
    assert len(capped) == len(first) + 1 and (tmp_path / "vocab.txt").exists()
    with pytest.raises(ValueError, match="empty corpus"):
        Tokenizer.build_vocab([])
    with pytest.raises(TypeError, match=r"corpus\[1\] must be str"):
        Tokenizer.build_vocab(["中", 3])


# ------------------------------------------------------------- bad input
def write(tmp_path, lines, name="vocab.txt"):
    path = tmp_path / name
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


BASE = [b"[PAD]", b"[UNK]", b"[CLS]", b"[SEP]", b"[MASK]"]


def test_missing_and_unreadable_vocab(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt does not exist.*build_vocab"):
        Tokenizer(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="directory without vocab.txt"):
        Tokenizer(tmp_path)
    if os.geteuid() != 0:  # root reads anything
        path = write(tmp_path, BASE)
        path.chmod(0)
        with pytest.raises(PermissionError, match="cannot read vocab file"):
            Tokenizer(path)


def test_empty_duplicate_blank_and_incomplete_vocabs(tmp_path):
    with pytest.raises(VocabError, match="empty.txt is empty"):
        Tokenizer(write(tmp_path, [b"", b""], "empty.txt"))
    with pytest.raises(VocabError, match=r"'中' on lines 6 and 8.*remove the repeated lines"):
        Tokenizer(write(tmp_path, [*BASE, "中".encode(), b"x", "中".encode()]))
    with pytest.raises(VocabError, match="line 6: empty line"):
        Tokenizer(write(tmp_path, [*BASE, b"", b"x"]))
    with pytest.raises(VocabError, match=r"vocab.txt has no \[CLS\], \[SEP\].*build_vocab"):
        Tokenizer(write(tmp_path, [b"[PAD]", b"[UNK]", b"x"]))
    with pytest.raises(VocabError, match=r"mapping has no \[UNK\]"):
        Tokenizer({"[PAD]": 0, "[CLS]": 1, "[SEP]": 2})
    with pytest.raises(VocabError, match="id 1 to both"):
        Tokenizer({"[PAD]": 0, "[UNK]": 1, "[CLS]": 1, "[SEP]": 2})
    with pytest.raises(VocabError, match="without gaps .id 2 is missing"):
        Tokenizer({"[PAD]": 0, "[UNK]": 1, "[CLS]": 3, "[SEP]": 4})


def test_non_utf8_vocab_names_file_and_line(tmp_path):
    path = write(tmp_path, [*BASE, "中".encode(), "国".encode("gbk")], "gbk.txt")
    with pytest.raises(VocabError, match=r"gbk.txt, line 7: not UTF-8.*iconv"):
        Tokenizer(path)


def test_bad_text_input(tok):
    with pytest.raises(TypeError, match=r"decode it first: text.decode\('utf-8'\)"):
        tok.encode("中国".encode())
    with pytest.raises(TypeError, match="not UTF-8 .*gbk"):
        tok.encode("中国".encode("gbk"))
    with pytest.raises(ValueError, match="undecodable character.*index 1"):
        tok.encode(b"a\xff".decode("utf-8", "surrogateescape"))
    with pytest.raises(TypeError, match="pair must be str, got int"):
        tok.encode("中", 3)
    with pytest.raises(ValueError, match="must be an int >= 3"):
        tok.encode("中", "国", max_length=2)
    with pytest.raises(TypeError, match="decode takes one sequence"):
        tok.decode(tok.encode_batch(["中", "国"])["input_ids"])


def test_mapping_vocab_behaves_as_its_file(tok):
    again = Tokenizer(tok.vocab)
    assert again.vocab == tok.vocab and again.special_tokens == tok.special_tokens
    assert [again.encode(t) for t in TEXTS] == [tok.encode(t) for t in TEXTS]


def test_saved_folder_loads_in_transformers(tmp_path, vocab_file):
    transformers = pytest.importorskip("transformers")
    tok = Tokenizer(vocab_file, do_lower_case=False, special_tokens=["<S>"])
    tok.save(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for text in ["Hello北京<S>上海", *TEXTS]:
        if "[unused" not in text:  # transformers does not keep [unusedN] whole
            assert tok.encode(text).ids == hf(text)["input_ids"], text
