"""Model configs: dataclasses read from and written to Hugging Face style ``config.json``."""

from __future__ import annotations

import dataclasses
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
    architecture: ClassVar[str] = ""  # transformers' class of the backbone with its usual head
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

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``config.json`` that transformers reads: the fields, ``model_type`` and
        ``architectures``."""
        values = self.to_dict()
        if self.architecture:
            values["architectures"] = [self.architecture]
        return values
