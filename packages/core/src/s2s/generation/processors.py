"""Score adjustments applied before a token is picked, each the same as in ``transformers``.

``history`` is every token each row has seen so far (the prompt as given to the engine plus
the tokens generated), ``[N, T]``; ``scores`` are that step's logits or log-probabilities,
``[N, vocab]``, adjusted in place.
"""

from __future__ import annotations

import logging

import torch

from .config import GenerationConfig

logger = logging.getLogger(__name__)

NEG_INF = float("-inf")


def adjust_scores(
    scores: torch.Tensor,
    history: torch.Tensor,
    generated: int,
    config: GenerationConfig,
    prompt_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply every adjustment ``config`` asks for; ``generated`` tokens were produced so far.

    ``prompt_mask`` [N, P] (True = real token) marks padding in the first P history columns:
    the repetition penalty skips it (the n-gram ban does not, as in ``transformers``)."""
    if config.min_new_tokens and generated < config.min_new_tokens:
        scores[:, config.eos_ids] = NEG_INF
    if config.repetition_penalty != 1.0 and history.shape[1]:
        penalise_repetition(scores, history, config.repetition_penalty, prompt_mask)
    if config.no_repeat_ngram_size:
        ban_repeated_ngrams(scores, history, config.no_repeat_ngram_size)
    if config.banned_token_ids:
        scores[:, list(config.banned_token_ids)] = NEG_INF
    return scores


def penalise_repetition(
    scores: torch.Tensor, history: torch.Tensor, penalty: float, prompt_mask: torch.Tensor | None = None
) -> None:
    """CTRL's penalty: a seen token's score is divided by ``penalty`` when positive, multiplied
    when negative. Positions where ``prompt_mask`` is False (padding) do not count."""
    vocab = scores.shape[-1]
    if prompt_mask is not None and not bool(prompt_mask.all()):
        history = history.clone()
        history[:, : prompt_mask.shape[1]].masked_fill_(~prompt_mask, vocab)  # the spare column
    padded = torch.nn.functional.pad(scores, (0, 1))
    seen = padded.gather(1, history)
    padded.scatter_(1, history, torch.where(seen < 0, seen * penalty, seen / penalty))
    scores.copy_(padded[:, :vocab])


def ban_repeated_ngrams(scores: torch.Tensor, history: torch.Tensor, n: int) -> None:
    """Forbid each token that would complete an n-gram already present in ``history``."""
    length = history.shape[1]
    if length < n:
        return
    prefix = history[:, length + 1 - n :]  # the last n-1 tokens  [N, n-1]
    windows = history.unfold(1, n, 1)  # every n-gram  [N, W, n]
    matches = (windows[..., :-1] == prefix.unsqueeze(1)).all(-1)  # [N, W]
    vocab = scores.shape[-1]
    # Non-matching windows point at a spare column past the vocab.
    banned = scores.new_zeros((scores.shape[0], vocab + 1), dtype=torch.bool)
    banned.scatter_(1, torch.where(matches, windows[..., -1], vocab), True)
    scores.masked_fill_(banned[:, :vocab], NEG_INF)


def warp_for_sampling(logits: torch.Tensor, config: GenerationConfig) -> torch.Tensor:
    """Temperature, then top-k, then top-p: tokens outside the kept set get ``-inf``."""
    if config.temperature != 1.0:
        logits = logits / config.temperature
    if config.top_k is not None and config.top_k < logits.shape[-1]:
        kth = logits.topk(config.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, NEG_INF)
    if config.top_p is not None and config.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Keep a token while the probability of the tokens ranked above it is below top_p:
        # the smallest set reaching top_p, and always the most likely token.
        before = probs.cumsum(-1) - probs
        drop_sorted = before >= config.top_p
        drop_sorted[:, 0] = False
        drop = drop_sorted.scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, NEG_INF)
    return logits


class AllowedTokens:
    """``config.allowed_tokens_fn`` applied over one generation call (see :class:`GenerationConfig`).

    Tokens a row may not produce get ``-inf`` (after the other adjustments, as
    ``transformers``' ``PrefixConstrainedLogitsProcessor``); probabilities are not renormalised.
    A row whose set is empty may only produce the first EOS, at score 0 (a beam ends with the
    score it has); without an EOS it gets no candidate at all. Either way one warning per call.
    """

    def __init__(self, config: GenerationConfig):
        self.fn = config.allowed_tokens_fn
        self.eos_ids = config.eos_ids
        self.warned = False

    def apply(self, scores: torch.Tensor, inputs: torch.Tensor, generated_ids: torch.Tensor) -> torch.Tensor:
        """Mask ``scores`` [N, vocab] in place for rows of inputs ``inputs`` [N] that generated
        ``generated_ids`` [N, t]; returns which rows had an empty set (bool [N])."""
        vocab = scores.shape[-1]
        keep = torch.zeros(scores.shape, dtype=torch.bool)
        ended = torch.zeros(scores.shape[0], dtype=torch.bool)
        for i, (row, ids) in enumerate(zip(inputs.tolist(), generated_ids.tolist())):
            allowed = self.fn(row, ids)
            if not isinstance(allowed, torch.Tensor):  # a precomputed tensor is used as it is
                allowed = torch.as_tensor(list(allowed), dtype=torch.long)
            allowed = allowed.reshape(-1).long().cpu()
            if allowed.numel() == 0:
                ended[i] = True
                continue
            if int(allowed.min()) < 0 or int(allowed.max()) >= vocab:
                bad = next(t for t in allowed.tolist() if not 0 <= t < vocab)
                raise ValueError(
                    f"allowed_tokens_fn({row}, {ids}) returned token id {bad}, outside the vocabulary "
                    f"(0..{vocab - 1})"
                )
            keep[i, allowed] = True
        keep, ended = keep.to(scores.device), ended.to(scores.device)
        scores.masked_fill_(~keep, NEG_INF)
        if bool(ended.any()):
            if self.eos_ids:
                scores[ended, self.eos_ids[0]] = 0.0
            if not self.warned:
                self.warned = True
                logger.warning(
                    "allowed_tokens_fn returned no token for input row(s) %s: %s",
                    sorted(set(inputs[ended].tolist())),
                    "the sequence ends with the EOS" if self.eos_ids else "the sequence ends (no eos_token_id)",
                )
        return ended
