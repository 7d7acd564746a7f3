"""What every task is: a head on a backbone, with collate, loss, predict and metrics.

A task declares which backbones it can run on (``kinds`` and ``capabilities``); a task that
runs differently per kind (seq2seq: UniLM on an encoder, native decoding otherwise)
overrides :meth:`Task.unsupported_reason`.
"""

from __future__ import annotations

import os
from typing import ClassVar

from torch import nn

from .backbone import ENCODER, Backbone
from .checkpoint import LoadReport


class Task(nn.Module):
    """Base class of tasks. ``forward(**batch)`` returns a dict with ``loss`` when labels are given."""

    kinds: ClassVar[frozenset[str]] = frozenset({ENCODER})
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, backbone: Backbone, tokenizer):
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer

    @classmethod
    def unsupported_reason(cls, backbone_cls: type[Backbone]) -> str | None:
        """Why this task cannot run on ``backbone_cls``, or ``None`` when it can."""
        if backbone_cls.kind not in cls.kinds:
            return f"needs a backbone of kind {' or '.join(sorted(cls.kinds))}, not {backbone_cls.kind}"
        lacking = cls.capabilities - backbone_cls.capabilities
        if lacking:
            return f"needs a backbone with {', '.join(sorted(lacking))}"
        return None

    def load_pretrained(self, path: str | os.PathLike) -> LoadReport:
        """Load backbone weights; this task's own head is reported as newly initialised."""
        report = self.backbone.load_pretrained(path)
        own = {k for k in self.state_dict() if not k.startswith("backbone.")}
        report.newly_initialized.extend(sorted(own))
        return report

    # The original library's name for the same call.
    load_pretrain_params = load_pretrained

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        self.backbone.save_pretrained(directory, tokenizer=self.tokenizer)
