"""Model configs: dataclasses read from and written to Hugging Face style ``config.json``."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A config file or value that is wrong; the message names the file or key."""


@dataclasses.dataclass
class Config:
    """Base of backbone configs. Subclasses are dataclasses with a default for every field.

    Keys of a ``config.json`` that a subclass does not define (``architectures``, …) are
    ignored; ``key_aliases`` maps other spellings of a key to the field name.
    """

    model_type: ClassVar[str] = ""
    key_aliases: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any], source: str = "config") -> C:
        names = {f.name for f in dataclasses.fields(cls)}
        known = {}
        for key, value in values.items():
            key = cls.key_aliases.get(key, key)
            if key in names:
                known[key] = value
        try:
            return cls(**known)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        if self.model_type:
            values["model_type"] = self.model_type
        return values


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object from ``path``, with errors that name the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})"
        ) from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(values).__name__}")
    return values
