"""Low-rank adapters (LoRA) on linear maps.

An adapted linear map computes ``base(x) + scale * B @ A @ dropout(x)`` with ``A [r, in]``
(drawn as ``nn.Linear`` draws its weight, as PEFT does) and ``B [out, r]`` starting at zero, so
a fresh adapter changes nothing; ``scale = alpha / r``, or ``alpha / sqrt(r)`` with
``use_rslora``. :func:`merge` adds ``scale * B @ A`` into the base weight (the adapter then
adds nothing), :func:`unmerge` takes it out again.

The adapter is attached without changing the module tree the backbone saves and loads: the
module's class becomes a subclass whose ``forward`` adds the adapter, and the adapter sits in
the module's ``__dict__`` (not a submodule, so the backbone's state dict, ``hf_state_dict`` and
checkpoint loads stay its own). Whoever attaches adapters registers them elsewhere (a task's
``lora_adapters``) so that they train, move between devices and are saved.

Linear maps are ``nn.Linear`` (``s2s.nn.prepacked.Linear`` included) and modules whose class
sets ``weight_is_in_out = True`` (:data:`s2s.nn.quantize.TRANSPOSED`): a weight stored
``[in, out]`` (GPT-2's Conv1D; PEFT's ``fan_in_fan_out``). Backbones call ``layer.forward(x)`` directly in their hot paths, which is
the adapted forward too. A path that multiplies by a layer's weight without its ``forward``
(T5's stacked q/k/v at inference) must check :func:`adapted` first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import dropout
from .quantize import TRANSPOSED

KEYWORDS = ("attention", "all-linear")  # targets named by the backbone, not by module names


@dataclass(frozen=True)
class LoraConfig:
    """``r`` (rank), ``alpha`` (scale numerator), ``dropout`` (on the adapter's input),
    ``targets`` (HF module names such as ``("q_proj", "v_proj")``, or ``"attention"`` /
    ``"all-linear"``; ``None``: the backbone's default), ``use_rslora``."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] | str | None = None
    use_rslora: bool = False

    def __post_init__(self):
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"LoRA r={self.r!r}: the rank must be a positive integer (e.g. r=8)")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise ValueError(f"LoRA alpha={self.alpha!r}: must be a positive number (e.g. alpha=16, twice r)")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA dropout={self.dropout!r}: must be a probability in [0, 1)")
        targets = self.targets
        if isinstance(targets, str) and targets not in KEYWORDS:
            targets = tuple(t for t in targets.replace("+", ",").split(",") if t)
        elif targets is not None and not isinstance(targets, str):
            targets = tuple(targets)
            if not targets or not all(isinstance(t, str) and t for t in targets):
                raise ValueError(f"LoRA targets={self.targets!r}: name modules, e.g. ['q_proj', 'v_proj']")
        object.__setattr__(self, "targets", targets)

    @property
    def scale(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    def to_dict(self) -> dict:
        values = asdict(self)
        if isinstance(self.targets, tuple):
            values["targets"] = list(self.targets)
        return values

    @classmethod
    def of(cls, value) -> LoraConfig:
        """A config from itself, a mapping with these keys, or the command line's
        ``"r=8,alpha=16,dropout=0.05,targets=q_proj+v_proj"``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            value = parse_options(value)
        if not isinstance(value, Mapping):
            raise TypeError(f"lora={value!r}: give a dict such as dict(r=8, alpha=16) or 'r=8,alpha=16'")
        unknown = sorted(set(value) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"lora: unknown key(s) {', '.join(unknown)}; the keys are "
                f"{', '.join(cls.__dataclass_fields__)}"
            )
        return cls(**value)


def parse_options(text: str) -> dict:
    """``"r=8,alpha=16,targets=q_proj+v_proj,use_rslora=true"`` as a dict of typed values
    (targets are joined by ``+``, since ``,`` separates the keys)."""
    values: dict = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--lora {text!r}: {item!r} is not key=value (e.g. r=8,alpha=16)")
        key = key.strip()
        raw = raw.strip()
        if key == "targets":
            values[key] = raw if raw in KEYWORDS else tuple(t for t in raw.split("+") if t)
        elif key == "use_rslora":
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--lora {text!r}: use_rslora takes true or false, not {raw!r}")
            values[key] = raw.lower() in ("true", "1")
        else:
            try:
                values[key] = int(raw) if key == "r" else float(raw)
            except ValueError:
                raise ValueError(f"--lora {text!r}: {key}={raw!r} is not a number") from None
    return values


class Adapter(nn.Module):
    """The low-rank update of one linear map: ``A [r, in]``, ``B [out, r]``."""

    def __init__(self, in_features: int, out_features: int, config: LoraConfig, transposed: bool = False):
        super().__init__()
        self.A = nn.Parameter(torch.empty(config.r, in_features))
        self.B = nn.Parameter(torch.zeros(out_features, config.r))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # nn.Linear's draw, as PEFT's default
        self.scale, self.p = config.scale, config.dropout
        self.transposed = transposed  # the base weight is [in, out]
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [.., in] -> [.., out]
        """The update in the adapter's dtype, or autocast's (which casts ``x`` itself)."""
        x = dropout(x, self.p, self.training) if self.p else x
        if x.dtype != self.A.dtype and not _autocast(x.device.type):  # a bf16 base keeps fp32 adapters
            x = x.to(self.A.dtype)
        return F.linear(F.linear(x, self.A), self.B) * self.scale

    def delta(self) -> torch.Tensor:
        """``scale * B @ A`` in the base weight's layout: ``[out, in]`` (``[in, out]`` if transposed)."""
        delta = (self.B.float() @ self.A.float()) * self.scale
        return delta.t() if self.transposed else delta


def _autocast(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


class _Adapted:
    """Mixed in before a linear map's class: its forward plus the adapter's, in the dtype of
    its own output (under bf16 autocast a bf16 output stays bf16, as PEFT's does, rather than
    turning everything after it fp32)."""

    def forward(self, x):
        out = super().forward(x)
        adapter = self.__dict__["lora"]
        return out if adapter.merged else out + adapter(x).to(out.dtype)


_CLASSES: dict[type, type] = {}


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or getattr(type(module), TRANSPOSED, False)


def attach(module: nn.Module, config: LoraConfig) -> Adapter:
    """Give the linear map ``module`` a fresh adapter (on its weight's device and dtype)."""
    if not is_linear(module):
        raise TypeError(f"{type(module).__name__} is not a linear map: LoRA adapts nn.Linear and [in, out] layers")
    if "lora" in module.__dict__:
        raise ValueError(f"this {type(module).__name__} already has a LoRA adapter")
    transposed = not isinstance(module, nn.Linear)
    rows, cols = module.weight.shape
    in_features, out_features = (rows, cols) if transposed else (cols, rows)
    adapter = Adapter(in_features, out_features, config, transposed).to(module.weight.device)
    module.__dict__["lora"] = adapter
    cls = type(module)
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"LoRA{cls.__name__}", (_Adapted, cls), {"__module__": cls.__module__})
    module.__class__ = _CLASSES[cls]
    return adapter


def adapter_of(module: nn.Module) -> Adapter | None:
    return module.__dict__.get("lora")


def adapted(*modules: nn.Module) -> bool:
    """Whether any of ``modules`` has an adapter not merged into its weight."""
    return any((a := adapter_of(m)) is not None and not a.merged for m in modules)


def merge(module: nn.Module) -> None:
    """Add the adapter into ``module``'s weight (a no-op when merged already)."""
    adapter = adapter_of(module)
    if adapter is not None and not adapter.merged:
        with torch.no_grad():
            module.weight.add_(adapter.delta().to(module.weight.dtype))
        adapter.merged = True


def unmerge(module: nn.Module) -> None:
    """Take a merged adapter back out of ``module``'s weight."""
    adapter = adapter_of(module)
    if adapter is not None and adapter.merged:
        with torch.no_grad():
            module.weight.sub_(adapter.delta().to(module.weight.dtype))
        adapter.merged = False


def detach(module: nn.Module) -> Adapter:
    """Remove ``module``'s adapter (merged or not) and give its class back."""
    adapter = module.__dict__.pop("lora")
    module.__class__ = next(c for c in type(module).__mro__[1:] if c is not _Adapted)
    return adapter


__all__ = [
    "KEYWORDS", "Adapter", "LoraConfig", "adapted", "adapter_of", "attach", "detach",
    "is_linear", "merge", "parse_options", "unmerge",
]
