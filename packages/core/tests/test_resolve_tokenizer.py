"""resolve_tokenizer: the vocab given, else the checkpoint's vocab.txt, else one built from texts."""

from __future__ import annotations

import json

import pytest

from s2s.tokenizer import Tokenizer, VocabError, resolve_tokenizer

TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "北", "京", "上", "海", "abc"]
TEXTS = ["北京 abc", "上海 xyz xyz"]


@pytest.fixture
def checkpoint(tmp_path):
    """A model folder: weights, a vocab.txt and a tokenizer config without lower-casing."""
    (tmp_path / "vocab.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    return tmp_path


def as_list(tokenizer):
    return [tokenizer.id_to_token(i) for i in range(len(tokenizer))]


def test_the_vocab_given_wins(checkpoint, tmp_path):
    given = Tokenizer({t: i for i, t in enumerate(TOKENS[:5])})
    assert resolve_tokenizer(given, checkpoint, TEXTS) is given
    vocab_file = tmp_path / "other.txt"
    vocab_file.write_text("\n".join(TOKENS[:6]) + "\n", encoding="utf-8")
    assert as_list(resolve_tokenizer(vocab_file, checkpoint, TEXTS)) == TOKENS[:6]


@pytest.mark.parametrize("name", ["", "model.safetensors"])
def test_the_checkpoint_vocab_and_its_settings(checkpoint, name):
    tokenizer = resolve_tokenizer(checkpoint=checkpoint / name, texts=TEXTS)
    assert as_list(tokenizer) == TOKENS
    assert tokenizer.do_lower_case is False


def test_a_checkpoint_without_vocab_is_an_error_not_a_new_vocab(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    for path in (tmp_path, tmp_path / "model.safetensors", tmp_path / "missing"):
        with pytest.raises(VocabError, match=f"checkpoint {path} has no vocab.txt or tokenizer.json beside it"):
            resolve_tokenizer(checkpoint=path, texts=TEXTS)


def test_a_vocab_built_from_texts_takes_build_options():
    tokenizer = resolve_tokenizer(texts=iter(TEXTS), min_frequency=1)
    words = [t for t in as_list(tokenizer) if len(t) > 1 and not t.startswith(("[", "##"))]
    assert sorted(words) == ["abc", "xyz"]  # whole words seen once are kept with min_frequency=1
    assert [t for t in as_list(resolve_tokenizer(texts=TEXTS)) if t in ("abc", "xyz")] == ["xyz"]
    for char in "北京上海":
        assert tokenizer.token_to_id(char) is not None


def test_nothing_to_go_on():
    with pytest.raises(ValueError, match="give a vocab, a checkpoint with a vocab.txt, or texts"):
        resolve_tokenizer()
