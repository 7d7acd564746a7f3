"""Model configs: dataclasses read from and written to Hugging Face style ``config.json``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A config file or value that is wrong; the message names the file or key."""


@dataclasses.dataclass
class Config:
    """Base of backbone configs. Subclasses are dataclasses with a default for every field.

    Keys of a ``config.json`` that a subclass does not define (``architectures``, …) are
    ignored; ``key_aliases`` maps other spellings of a key to the field name, and the config
    answers to them too, as transformers' ``attribute_map`` does: GPT-2's
    ``config.hidden_size`` is its ``n_embd``. The backbone contract's defaults read the common
    names (:class:`s2s.backbone.Backbone`: ``max_position_embeddings``, ``hidden_dropout_prob``,
    ``initializer_range``, ``num_hidden_layers``, ``num_attention_heads``, ``head_dim``), so a
    config that spells them otherwise aliases them. ``head_dim``, where no field states it or
    is aliased to it, is ``hidden_size // num_attention_heads`` (as transformers' models take it).
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

    def __getattr__(self, name: str) -> Any:
        # Only reached when ``name`` is not a field or attribute: an alias reads its field, and
        # ``head_dim`` that no field states is transformers' default (hidden_size / heads).
        field = type(self).key_aliases.get(name)
        if field is not None and field != name:
            return getattr(self, field)
        if name == "head_dim":
            return self.hidden_size // self.num_attention_heads
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @classmethod
    def has_key(cls, name: str) -> bool:
        """Whether the config has the field ``name``, under that name or as an alias."""
        names = {f.name for f in dataclasses.fields(cls)}
        return name in names or cls.key_aliases.get(name) in names

    def check_choice(self, name: str, choices: Sequence[str]) -> None:
        """Refuse a value of the field ``name`` outside ``choices``, naming them."""
        value = getattr(self, name)
        if value not in choices:
            raise ConfigError(f"{name}={value!r}; supported: {', '.join(choices)}")

    def check_multiple(self, name: str, of: str) -> None:
        """Refuse a field ``name`` that is not a multiple of the field ``of`` (a width its heads
        share)."""
        value, divisor = getattr(self, name), getattr(self, of)
        if value % divisor:
            raise ConfigError(f"{name}={value} is not a multiple of {of}={divisor}")

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
