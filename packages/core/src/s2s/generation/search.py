"""Greedy search, sampling and batched beam search over any :class:`~.protocol.Decoder`.

Results are lists of generated token ids per sequence, the EOS left out. Beam search follows
the algorithm of ``transformers``' ``generate`` step for step (candidates, finished
hypotheses, length penalty, early stopping), so on the same logits it picks the same tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import torch

from ..tokenizer.streaming import DecodeStream
from .config import GenerationConfig
from .processors import AllowedTokens, adjust_scores, warp_for_sampling
from .protocol import Decoder

# Score given to impossible candidates, as transformers does (not -inf: sums stay finite).
IMPOSSIBLE = -1.0e9


def make_config(config: GenerationConfig | None = None, **options) -> GenerationConfig:
    """``config`` with ``options`` replacing its fields (``beam_size`` is ``num_beams``)."""
    if "beam_size" in options:
        options["num_beams"] = options.pop("beam_size")
    if config is None:
        return GenerationConfig(**options)
    if not options:
        config.validate()
        return config
    return dataclasses.replace(config, **options)


def options_from_row(start: int, options: dict) -> dict:
    """``options`` for a chunk of a longer list of inputs that starts at input ``start``: the
    chunk's ``allowed_tokens_fn`` sees each input's index in the whole list (tasks generate in
    batches of ``batch_size``)."""
    fn = options.get("allowed_tokens_fn")
    if fn is None or start == 0:
        return options
    return {**options, "allowed_tokens_fn": lambda row, generated: fn(start + row, generated)}


@torch.no_grad()
def generate(
    decoder: Decoder,
    inputs: Any,
    config: GenerationConfig | None = None,
    *,
    prompt_ids: torch.Tensor | None = None,
    prompt_mask: torch.Tensor | None = None,
    **options,
) -> list[list[int]]:
    """Generate for every row of ``inputs``; returns ``B * num_return_sequences`` token lists,
    input-major (all sequences of input 0 first).

    ``prompt_ids`` ([B, P], optional) are the tokens the repetition penalty and the n-gram
    ban see before the generated ones; ``prompt_mask`` ([B, P], 1 = real token) marks their
    padding, which the repetition penalty skips (both as ``transformers`` does).
    """
    config = make_config(config, **options)
    if config.num_beams > 1:
        return beam_search(decoder, inputs, config, prompt_ids=prompt_ids, prompt_mask=prompt_mask)
    rows: dict[int, list[int]] = {}
    steps = _token_steps(decoder, inputs, config, prompt_ids, prompt_mask)
    for row_ids, tokens, finished in steps:
        for row, token, done in zip(row_ids.tolist(), tokens.tolist(), finished.tolist()):
            out = rows.setdefault(row, [])
            if not done:
                out.append(token)
    return [rows.get(i, []) for i in range(max(rows) + 1 if rows else 0)]


@torch.no_grad()
def stream(
    decoder: Decoder,
    inputs: Any,
    text: DecodeStream,
    config: GenerationConfig | None = None,
    *,
    prompt_ids: torch.Tensor | None = None,
    prompt_mask: torch.Tensor | None = None,
    **options,
) -> Iterator[str]:
    """Yield the text of one input as it is produced (greedy or sampling).

    ``text`` turns the ids into text as they come (``tokenizer.decode_stream()``): each yielded
    piece is what the text gained, at complete characters only, so joining the pieces gives
    ``tokenizer.decode`` of the output.
    """
    config = make_config(config, **options)
    if config.num_beams > 1 or config.num_return_sequences > 1:
        raise ValueError("streaming yields one sequence: use num_beams=1 and num_return_sequences=1")
    for _, tokens, finished in _token_steps(decoder, inputs, config, prompt_ids, prompt_mask, batch_limit=1):
        if finished[0]:
            break
        piece = text.step(int(tokens[0]))
        if piece is not None:
            yield piece
    rest = text.flush()  # an incomplete character at the end, as decode shows it
    if rest is not None:
        yield rest


def _token_steps(
    decoder: Decoder,
    inputs: Any,
    config: GenerationConfig,
    prompt_ids: torch.Tensor | None,
    prompt_mask: torch.Tensor | None,
    batch_limit: int | None = None,
):
    """Greedy / sampling loop. Yields ``(rows, tokens, finished)`` each step: the original row
    index of each running sequence, its new token, and whether that token is an EOS.
    Finished rows are dropped from the decoder state, so later steps cost less."""
    logits, state = decoder.start(inputs)
    batch = logits.shape[0]
    if batch_limit is not None and batch > batch_limit:
        raise ValueError(f"expected at most {batch_limit} input(s), got {batch}")
    config.validate(vocab_size=logits.shape[-1])
    history = _prompt_history(prompt_ids, batch, logits.device)
    mask = _prompt_mask(prompt_mask, history)
    copies = config.num_return_sequences
    rows = torch.arange(batch * copies, device=logits.device)
    if copies > 1:
        index = torch.arange(batch, device=logits.device).repeat_interleave(copies)
        state = decoder.reorder(state, index)
        logits, history, mask = logits[index], history[index], mask[index]
    generator = _generator(config.seed, logits.device) if config.do_sample else None
    eos = torch.tensor(config.eos_ids, dtype=torch.long, device=logits.device)
    constraint = AllowedTokens(config) if config.allowed_tokens_fn is not None else None
    prompt_len = history.shape[1]
    for generated in range(config.max_new_tokens):
        scores = adjust_scores(logits.float().clone(), history, generated, config, mask)
        ended = None
        if constraint is not None:
            ended = constraint.apply(scores, rows // copies, history[:, prompt_len:])
            if not config.eos_ids:
                scores[ended, 0] = 0.0  # any token: the row is finished and it is not kept
        if config.do_sample:
            probs = warp_for_sampling(scores, config).softmax(-1)
            tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            tokens = scores.argmax(-1)
        finished = torch.isin(tokens, eos)
        if ended is not None:
            finished |= ended
        yield rows, tokens, finished
        if generated + 1 == config.max_new_tokens:
            return
        history = torch.cat([history, tokens[:, None]], dim=1)
        if finished.any():
            running = (~finished).nonzero().squeeze(1)
            if running.numel() == 0:
                return
            state = decoder.reorder(state, running)
            rows, tokens, history, mask = rows[running], tokens[running], history[running], mask[running]
        logits, state = decoder.step(tokens, state)


@torch.no_grad()
def beam_search(
    decoder: Decoder,
    inputs: Any,
    config: GenerationConfig,
    *,
    prompt_ids: torch.Tensor | None = None,
    prompt_mask: torch.Tensor | None = None,
) -> list[list[int]]:
    """Batched beam search: the beams of every input are rows of one decoder state.

    Per step, each input keeps its ``2 * num_beams`` best continuations (summed log-probs);
    those ending in EOS (or at the length limit) compete for the finished list, scored
    ``score / generated_len ** length_penalty``; the best ``num_beams`` others run on, and the
    decoder state and histories follow them through :meth:`Decoder.reorder`.
    """
    logits, state = decoder.start(inputs)
    batch, vocab = logits.shape
    config.validate(vocab_size=vocab)
    beams, device = config.num_beams, logits.device
    expand = torch.arange(batch, device=device).repeat_interleave(beams)
    state = decoder.reorder(state, expand)
    logits = logits[expand]

    prompt = _prompt_history(prompt_ids, batch, device)
    prompt_len = prompt.shape[1]
    mask = _prompt_mask(prompt_mask, prompt)[expand]
    max_len = prompt_len + config.max_new_tokens
    eos = torch.tensor(config.eos_ids, dtype=torch.long, device=device)
    width = max(2, 1 + len(config.eos_ids)) * beams  # candidates kept per input and step
    top_beams = torch.arange(width, device=device) < beams
    lp, early = config.length_penalty, config.early_stopping
    constraint = AllowedTokens(config) if config.allowed_tokens_fn is not None else None

    running = torch.zeros((batch, beams, max_len), dtype=torch.long, device=device)
    running[:, :, :prompt_len] = prompt[:, None, :]
    running_scores = torch.zeros((batch, beams), device=device)
    running_scores[:, 1:] = IMPOSSIBLE  # all beams start equal: only the first one may extend
    finished = running.clone()
    finished_scores = torch.full((batch, beams), IMPOSSIBLE, device=device)
    finished_len = torch.zeros((batch, beams), dtype=torch.long, device=device)
    is_finished = torch.zeros((batch, beams), dtype=torch.bool, device=device)
    improvable = torch.ones((batch, 1), dtype=torch.bool, device=device)
    batch_offset = torch.arange(batch, device=device)[:, None] * beams

    for generated in range(config.max_new_tokens):
        cur = prompt_len + generated
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        history = running.view(batch * beams, max_len)[:, :cur]
        log_probs = adjust_scores(log_probs, history, generated, config, mask)
        if constraint is not None:
            constraint.apply(log_probs, expand, history[:, prompt_len:])
        log_probs = (log_probs.view(batch, beams, vocab) + running_scores[:, :, None]).view(batch, -1)

        # Candidates: the best `width` (beam, token) pairs of each input.
        cand_scores, cand_index = log_probs.topk(width)
        cand_beam = cand_index // vocab
        cand_seqs = _gather(running, cand_beam)
        cand_seqs[:, :, cur] = cand_index % vocab
        ends = torch.isin(cand_seqs[:, :, cur], eos) | (cur + 1 >= max_len)

        # The best unfinished candidates run on.
        open_scores = cand_scores + ends.to(torch.float32) * IMPOSSIBLE
        chosen = open_scores.topk(beams).indices
        running = _gather(cand_seqs, chosen)
        running_scores = _gather(open_scores, chosen)
        parents = _gather(cand_beam, chosen)

        # Finished candidates among the top `beams` join the finished list if good enough.
        just_finished = ends & top_beams[None, :]
        scores = cand_scores / ((cur + 1 - prompt_len) ** lp)
        batch_full = is_finished.all(-1, keepdim=True) & (early is True)
        scores += batch_full.to(torch.float32) * IMPOSSIBLE
        scores += (~improvable).to(torch.float32) * IMPOSSIBLE
        scores += (~just_finished) * IMPOSSIBLE
        merged_scores = torch.cat((finished_scores, scores), dim=1)
        best = merged_scores.topk(beams).indices
        finished = _gather(torch.cat((finished, cand_seqs), dim=1), best)
        finished_scores = _gather(merged_scores, best)
        is_finished = _gather(torch.cat((is_finished, just_finished), dim=1), best)
        new_len = torch.full_like(cand_beam, generated + 1)
        finished_len = _gather(torch.cat((finished_len, new_len), dim=1), best)

        # Stop when no input can improve, every input is full (early_stopping=True), or
        # every candidate ended.
        if early == "never" and lp > 0.0:
            best_length = max_len - prompt_len
        else:
            best_length = cur + 1 - prompt_len
        best_running = running_scores[:, :1] / (best_length**lp)
        worst_finished = torch.where(
            is_finished, finished_scores.min(dim=1, keepdim=True).values, IMPOSSIBLE
        )
        improvable = improvable & (best_running > worst_finished).any(-1, keepdim=True)
        if (
            not improvable.any()
            or (early is True and bool(is_finished.all()))
            or bool(ends.all())
            or generated + 1 == config.max_new_tokens
        ):
            break
        state = decoder.reorder(state, (parents + batch_offset).view(-1))
        logits, state = decoder.step(running[:, :, cur].reshape(-1), state)

    results = []
    eos_set = set(config.eos_ids)
    for b in range(batch):
        for r in range(config.num_return_sequences):
            length = int(finished_len[b, r])
            ids = finished[b, r, prompt_len : prompt_len + length].tolist()
            if ids and ids[-1] in eos_set:
                ids.pop()
            results.append(ids)
    return results


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` [B, K] of ``tensor`` [B, M, ...] along dim 1."""
    while index.dim() < tensor.dim():
        index = index.unsqueeze(-1)
    return tensor.take_along_dim(index, dim=1)


def _prompt_history(prompt_ids: torch.Tensor | None, batch: int, device) -> torch.Tensor:
    if prompt_ids is None:
        return torch.zeros((batch, 0), dtype=torch.long, device=device)
    prompt_ids = torch.as_tensor(prompt_ids, dtype=torch.long, device=device)
    if prompt_ids.dim() != 2 or prompt_ids.shape[0] != batch:
        raise ValueError(
            f"prompt_ids must be [batch={batch}, length], got shape {tuple(prompt_ids.shape)}"
        )
    return prompt_ids


def _prompt_mask(prompt_mask, prompt: torch.Tensor) -> torch.Tensor:
    if prompt_mask is None:
        return torch.ones(prompt.shape, dtype=torch.bool, device=prompt.device)
    prompt_mask = torch.as_tensor(prompt_mask, device=prompt.device).bool()
    if prompt_mask.shape != prompt.shape:
        raise ValueError(
            f"prompt_mask must have the shape of prompt_ids {tuple(prompt.shape)}, got {tuple(prompt_mask.shape)}"
        )
    return prompt_mask


def _generator(seed: int | None, device) -> torch.Generator | None:
    if seed is None:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
