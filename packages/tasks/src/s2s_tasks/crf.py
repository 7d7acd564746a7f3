"""A linear-chain conditional random field over tag sequences.

The score of tags ``y_0 … y_{n-1}`` for emissions ``e`` is::

    start[y_0] + Σ_t e[t, y_t] + Σ_{t≥1} transitions[y_{t-1}, y_t] + end[y_{n-1}]

and the loss is ``log Z − score(gold)`` with ``Z`` summed over every tag sequence (the
forward algorithm). ``mask`` marks the real positions of each sequence: a prefix of it
(``[1, 1, 1, 0, 0]``), so sequences may have any length from 0 up; callers that must skip
a leading ``[CLS]`` pass the emissions from position 1 on.

With ``constraints="BIO"`` or ``"BIOES"`` and the tag names, transitions that the scheme
forbids (``O → I-X``, ``B-X → I-Y``, start at ``I-X``, …) get a fixed score of −10000, so
neither training nor Viterbi decoding picks them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .spans import check_scheme, split_tag

FORBIDDEN = -1e4


class CRF(nn.Module):
    def __init__(
        self,
        num_tags: int,
        constraints: str | None = None,
        tags: Sequence[str] | None = None,
    ):
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))  # [from, to]
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        for parameter in (self.transitions, self.start_transitions, self.end_transitions):
            nn.init.uniform_(parameter, -0.1, 0.1)
        allowed = allowed_transitions(constraints, tags, num_tags)
        self.register_buffer("penalty", _penalties(allowed[0]), persistent=False)
        self.register_buffer("start_penalty", _penalties(allowed[1]), persistent=False)
        self.register_buffer("end_penalty", _penalties(allowed[2]), persistent=False)

    def _scores(self):
        return (
            self.transitions + self.penalty,
            self.start_transitions + self.start_penalty,
            self.end_transitions + self.end_penalty,
        )

    def forward(self, emissions, tags, mask=None, reduction: str = "mean"):
        """Negative log-likelihood of ``tags`` [B, L]; emissions [B, L, num_tags], mask [B, L].

        ``reduction``: ``"mean"`` (over sequences), ``"sum"`` or ``"none"`` ([B]).
        """
        mask = _mask(emissions, mask)
        nll = self.log_partition(emissions, mask) - self.score(emissions, tags, mask)
        if reduction == "none":
            return nll
        return nll.sum() if reduction == "sum" else nll.mean()

    def score(self, emissions, tags, mask=None):
        """Score of the tag sequences ``tags`` [B, L] (positions outside ``mask`` ignored): [B]."""
        mask = _mask(emissions, mask)
        transitions, start, end = self._scores()
        tags = tags.masked_fill(~mask, 0)  # padding labels (e.g. -100) become a harmless index
        emitted = emissions.gather(-1, tags.unsqueeze(-1)).squeeze(-1)  # [B, L]
        steps = transitions[tags[:, :-1], tags[:, 1:]]  # [B, L-1]
        total = (emitted * mask).sum(1) + (steps * mask[:, 1:]).sum(1)
        lengths = mask.sum(1)
        last = tags.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        total = total + start[tags[:, 0]] + end[last]
        return torch.where(lengths > 0, total, torch.zeros_like(total))

    def log_partition(self, emissions, mask=None):
        """``log Z``: log-sum-exp of the scores of every tag sequence, by the forward algorithm: [B]."""
        mask = _mask(emissions, mask)
        transitions, start, end = self._scores()
        alpha = start + emissions[:, 0]  # [B, T]: log-sum of paths ending in each tag
        for t in range(1, emissions.shape[1]):
            step = alpha.unsqueeze(2) + transitions + emissions[:, t].unsqueeze(1)  # [B, from, to]
            alpha = torch.where(mask[:, t, None], torch.logsumexp(step, dim=1), alpha)
        log_z = torch.logsumexp(alpha + end, dim=1)
        return torch.where(mask.any(1), log_z, torch.zeros_like(log_z))

    @torch.no_grad()
    def decode(self, emissions, mask=None) -> list[list[int]]:
        """The best tag sequence of each row (Viterbi, batched), each as long as its mask."""
        mask = _mask(emissions, mask)
        transitions, start, end = self._scores()
        batch, length, num_tags = emissions.shape
        best = start + emissions[:, 0]  # [B, T]: best score of a path ending in each tag
        identity = torch.arange(num_tags, device=emissions.device).expand(batch, num_tags)
        pointers = []  # pointers[t-1][b, tag at t] = best tag at t-1
        for t in range(1, length):
            step = best.unsqueeze(2) + transitions + emissions[:, t].unsqueeze(1)
            step_best, step_from = step.max(dim=1)
            real = mask[:, t, None]
            best = torch.where(real, step_best, best)
            pointers.append(torch.where(real, step_from, identity))  # padding: stay on the tag
        tag = (best + end).argmax(dim=1)  # [B]
        path = [tag]
        for back in reversed(pointers):
            tag = back.gather(1, tag.unsqueeze(1)).squeeze(1)
            path.append(tag)
        path = torch.stack(path[::-1], dim=1).tolist()  # [B, L]
        return [row[:n] for row, n in zip(path, mask.sum(1).tolist())]


def _mask(emissions, mask):
    if mask is None:
        return torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
    return mask.bool()


def _penalties(allowed: torch.Tensor) -> torch.Tensor:
    return torch.where(allowed, 0.0, FORBIDDEN)


def allowed_transitions(
    scheme: str | None, tags: Sequence[str] | None, num_tags: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boolean ``(transitions [T, T], start [T], end [T])`` that ``scheme`` allows on ``tags``."""
    if scheme is None:
        every = torch.ones(num_tags, dtype=torch.bool)
        return torch.ones(num_tags, num_tags, dtype=torch.bool), every, every.clone()
    scheme = check_scheme(scheme)
    if tags is None or len(tags) != num_tags:
        raise ValueError(
            f"constraints={scheme!r} needs the {num_tags} tag names (tags=[...]) to know "
            f"which transitions the scheme allows"
        )
    parsed = [split_tag(tag, scheme) for tag in tags]

    def may_follow(prev, cur) -> bool:
        (p_prefix, p_type), (c_prefix, c_type) = prev, cur
        entity_open = p_prefix in ("B", "I")
        if c_prefix in ("I", "E"):
            return entity_open and p_type == c_type
        return not (scheme == "BIOES" and entity_open)  # BIOES closes an entity with E- first

    transitions = torch.tensor([[may_follow(p, c) for c in parsed] for p in parsed])
    start = torch.tensor([prefix not in ("I", "E") for prefix, _ in parsed])
    if scheme == "BIOES":
        end = torch.tensor([prefix not in ("B", "I") for prefix, _ in parsed])
    else:
        end = torch.ones(num_tags, dtype=torch.bool)
    return transitions, start, end
