"""Hugging Face fast-tokenizer folders (``tokenizer.json``): byte-level BPE (Qwen2, Llama 3,
GLM-4) and every other model the ``tokenizers`` library reads.

``HFTokenizer(folder)`` loads ``tokenizer.json`` as the engine, then, as transformers does,
the special tokens of ``tokenizer_config.json`` and ``special_tokens_map.json`` (``bos_token``,
``eos_token``, ``pad_token`` …, ``additional_special_tokens``, ``added_tokens_decoder``),
``padding_side``, ``clean_up_tokenization_spaces`` (ignored for BPE, as transformers 5 does)
and the chat template (``chat_template`` in the config, or ``chat_template.jinja``).
:meth:`HFTokenizer.save` writes the folder back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import tokenizers
from tokenizers import AddedToken

from ..folder import CHAT_TEMPLATE_FILE, SPECIAL_TOKENS_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE
from ..io import atomic_write
from .chat import ChatTemplate
from .encoding import EngineTokenizer
from .vocab import VocabError

ROLES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class TokenizerFileError(VocabError):
    """A tokenizer folder whose files cannot be used; the message names the file and why."""


class HFTokenizer(EngineTokenizer):
    """A Hugging Face fast-tokenizer folder, with the interface of :class:`s2s.Tokenizer`."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        path = self.folder / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.folder} has no {TOKENIZER_FILE}: pass a Hugging Face tokenizer folder "
                "(or a folder with a BERT vocab.txt to s2s.Tokenizer)"
            )
        self._json = _read_text(path)
        _engine_from(self._json, path)  # refused files fail here, naming the file
        self.config = _read_json(self.folder / TOKENIZER_CONFIG_FILE)
        special_map = _read_json(self.folder / SPECIAL_TOKENS_FILE)
        self.padding_side = self.config.get("padding_side", "right")
        if self.padding_side not in ("left", "right"):
            raise TokenizerFileError(
                f"{self.folder / TOKENIZER_CONFIG_FILE}: padding_side={self.padding_side!r} must be 'left' or 'right'"
            )
        self._roles = {}  # role -> token, e.g. "eos_token" -> "<|im_end|>"
        for role in ROLES:
            token = _content(self.config.get(role, special_map.get(role)))
            if token is not None:
                self._roles[role] = token
        extra = self.config.get("additional_special_tokens", special_map.get("additional_special_tokens")) or []
        added = [
            _added_token(entry, f"{self.folder / TOKENIZER_CONFIG_FILE}: added_tokens_decoder[{index}]")
            for index, entry in sorted((self.config.get("added_tokens_decoder") or {}).items(), key=lambda kv: int(kv[0]))
        ]
        self._ensure_tokens(added, [*self._roles.values(), *map(_content, extra)])
        template_file = self.folder / CHAT_TEMPLATE_FILE
        if template_file.is_file():
            self.chat_template = ChatTemplate(_read_text(template_file), str(template_file), from_file=True)
        elif isinstance(self.config.get("chat_template"), (str, list)):
            self.chat_template = ChatTemplate.from_config(self.config["chat_template"], f"{self.folder / TOKENIZER_CONFIG_FILE} chat_template")
        else:
            self.chat_template = None

    # ----------------------------------------------------------------- vocab
    def _ensure_tokens(self, added: list[AddedToken], special: list[str]) -> int:
        """Add the tokens the engine lacks (``added`` as given, ``special`` as special tokens);
        returns how many were new to the vocab."""
        engine = _engine_from(self._json, None)
        known = engine.get_vocab(with_added_tokens=True)
        before = len(known)
        missing = [t for t in added if t.content not in known]
        missing += [AddedToken(t, special=True, normalized=False) for t in special if t not in known]
        already = [t for t in special if t in known and t not in self._added_specials(engine)]
        if missing or already:
            engine.add_special_tokens(missing + [AddedToken(t, special=True, normalized=False) for t in already])
            self._json = engine.to_str()
        self._reset_engines()
        self.vocab = self._engine.get_vocab(with_added_tokens=True)
        self._id_to_token = {i: t for t, i in self.vocab.items()}
        self._skip_ids = {i for i, t in self._engine.get_added_tokens_decoder().items() if t.special}
        return len(self.vocab) - before

    @staticmethod
    def _added_specials(engine: tokenizers.Tokenizer) -> set[str]:
        return {t.content for t in engine.get_added_tokens_decoder().values() if t.special}

    def add_special_tokens(self, tokens) -> int:
        """Make ``tokens`` special (never split, dropped by ``decode(skip_special_tokens=True)``),
        appending those not in the vocab; returns how many were appended."""
        tokens = list(tokens)
        for token in tokens:
            if not isinstance(token, str) or not token.strip():
                raise ValueError(f"special token {token!r} must be a non-blank string")
        return self._ensure_tokens([], tokens)

    def _new_engine(self) -> tokenizers.Tokenizer:
        engine = _engine_from(self._json, None)
        engine.no_truncation()  # a tokenizer.json may carry settings; s2s sets them per call
        engine.no_padding()
        return engine

    def __len__(self) -> int:
        return self._engine.get_vocab_size(with_added_tokens=True)

    def __repr__(self) -> str:
        return f"HFTokenizer({str(self.folder)!r}, vocab_size={len(self)})"

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def id_to_token(self, index: int) -> str:
        token = self._id_to_token.get(int(index))
        if token is None:
            raise ValueError(f"token id {index} is not in the vocab (size {len(self)})")
        return token

    @property
    def special_tokens(self) -> list[str]:
        """The special added tokens, in id order."""
        return [t.content for _, t in sorted(self._engine.get_added_tokens_decoder().items()) if t.special]

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """Role -> token (``bos_token``, ``eos_token``, ``pad_token`` …) as the folder names them."""
        return dict(self._roles)

    def _role_id(self, role: str) -> int | None:
        token = self._roles.get(role)
        return None if token is None else self.vocab[token]

    pad_token = property(lambda self: self._roles.get("pad_token"))
    pad_id = property(lambda self: self._role_id("pad_token"))
    unk_id = property(lambda self: self._role_id("unk_token"))
    bos_id = property(lambda self: self._role_id("bos_token"))
    eos_id = property(lambda self: self._role_id("eos_token"))
    cls_id = property(lambda self: self._role_id("cls_token"))
    sep_id = property(lambda self: self._role_id("sep_token"))
    mask_id = property(lambda self: self._role_id("mask_token"))

    @property
    def end_id(self) -> int | None:
        """The eos token (else the sep token of a BERT-style folder): it ends a text and stops generation."""
        eos = self.eos_id
        return self.sep_id if eos is None else eos

    # -------------------------------------------------------------- decoding
    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """The engine's decoding of ``ids`` (transformers' ``decode``, with the clean-up of
        spaces before punctuation where the config asks for it and the model is not BPE)."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        text = self._engine.decode(list(ids), skip_special_tokens=skip_special_tokens)
        if self.config.get("clean_up_tokenization_spaces") and self._model_type != "BPE":
            for before, after in CLEAN_UP:
                text = text.replace(before, after)
        return text

    @property
    def _model_type(self) -> str:
        return type(self._engine.model).__name__

    # ------------------------------------------------------------------ save
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``tokenizer.json``, ``tokenizer_config.json`` (with the chat template, and
        ``special_tokens_map.json`` where the folder had one) into ``directory``; returns the
        ``tokenizer.json`` path. ``HFTokenizer(directory)`` loads it back."""
        directory = Path(directory)
        path = directory / TOKENIZER_FILE
        with atomic_write(path, "w", encoding="utf-8") as handle:
            handle.write(_engine_from(self._json, None).to_str(pretty=True))
        config = {
            **self.config,
            **self._roles,
            "added_tokens_decoder": {
                str(i): _added_token_json(t) for i, t in sorted(self._engine.get_added_tokens_decoder().items())
            },
            "padding_side": self.padding_side,
        }
        config.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
        config.pop("chat_template", None)
        if self.chat_template is not None:
            if self.chat_template.from_file:
                with atomic_write(directory / CHAT_TEMPLATE_FILE, "w", encoding="utf-8") as handle:
                    handle.write(self.chat_template.source_text)
            else:
                config["chat_template"] = self.chat_template.config_value
        with atomic_write(directory / TOKENIZER_CONFIG_FILE, "w", encoding="utf-8") as handle:
            json.dump(config, handle, ensure_ascii=False, indent=2)
        if (self.folder / SPECIAL_TOKENS_FILE).is_file():
            with atomic_write(directory / SPECIAL_TOKENS_FILE, "w", encoding="utf-8") as handle:
                json.dump(self._roles, handle, ensure_ascii=False, indent=2)
        return path


CLEAN_UP = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
    (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)  # fmt: skip  # transformers' clean_up_tokenization, in its order


def _engine_from(text: str, path: Path | None) -> tokenizers.Tokenizer:
    try:
        return tokenizers.Tokenizer.from_str(text)
    except Exception as error:  # the library raises a bare Exception naming the JSON position
        raise TokenizerFileError(
            f"{path}: the tokenizers library {tokenizers.__version__} refuses this file: {error}. "
            "It may come from a newer tokenizers (pip install -U tokenizers) or be damaged "
            "(download it again)"
        ) from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise TokenizerFileError(f"{path} is not UTF-8 ({error}); download it again") from None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise TokenizerFileError(f"{path} is not valid JSON ({error}); fix or delete it") from None
    if not isinstance(data, dict):
        raise TokenizerFileError(f"{path} must hold a JSON object; fix or delete it")
    return data


def _content(token) -> str | None:
    """A config's token: a string, or transformers' ``{"content": ...}`` AddedToken object."""
    return token.get("content") if isinstance(token, dict) else token


def _added_token(entry, where: str) -> AddedToken:
    if not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
        raise TokenizerFileError(f"{where} must be an object with a string 'content'")
    flags = {k: bool(entry[k]) for k in ("single_word", "lstrip", "rstrip", "normalized", "special") if k in entry}
    return AddedToken(entry["content"], **flags)


def _added_token_json(token: AddedToken) -> dict:
    return {
        "content": token.content, "lstrip": token.lstrip, "normalized": token.normalized,
        "rstrip": token.rstrip, "single_word": token.single_word, "special": token.special,
    }  # fmt: skip
