"""The CRF against brute-force enumeration of every tag sequence."""

from __future__ import annotations

import itertools

import pytest
import torch

from s2s_tasks.crf import CRF
from s2s_tasks.spans import tag_names


def path_score(crf, emissions, path):
    """The score of one tag path, written out term by term."""
    score = crf.start_transitions[path[0]] + crf.end_transitions[path[-1]]
    for t, tag in enumerate(path):
        score = score + emissions[t, tag]
        if t:
            score = score + crf.transitions[path[t - 1], tag]
    return score


def allowed(path, tags, scheme):
    """Whether a path of tag indices is a valid sequence of ``scheme`` (written independently)."""
    names = [tags[i] for i in path]
    if scheme == "BIO":
        previous = "O"
        for name in names:
            if name.startswith("I-") and previous[2:] != name[2:]:
                return False
            previous = name
        return True
    previous = "O"
    for name in names + ["O"]:
        needs_open = name[:1] in "IE" and name != "O"
        is_open = previous[:1] in "BI" and previous != "O"
        if needs_open and not (is_open and previous[2:] == name[2:]):
            return False
        if not needs_open and is_open:
            return False
        previous = name
    return True


def brute_force(crf, emissions, length, valid=None):
    """log Z and the best path of one sequence, enumerating every path of ``length`` tags."""
    scores, paths = [], []
    for path in itertools.product(range(crf.num_tags), repeat=length):
        if valid is not None and not valid(path):
            continue
        scores.append(path_score(crf, emissions, path))
        paths.append(list(path))
    scores = torch.stack(scores)
    return torch.logsumexp(scores, 0), paths[int(scores.argmax())]


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5])
def test_log_partition_gold_score_and_viterbi_match_enumeration(length):
    torch.manual_seed(length)
    num_tags, batch, padded = 3, 4, 6
    crf = CRF(num_tags)
    with torch.no_grad():  # larger than the default init so that paths differ clearly
        for p in crf.parameters():
            p.normal_()
    emissions = torch.randn(batch, padded, num_tags)
    lengths = torch.tensor([length, max(1, length - 1), length, 1])
    mask = torch.arange(padded)[None] < lengths[:, None]
    tags = torch.randint(num_tags, (batch, padded)).masked_fill(~mask, -100)

    log_z = crf.log_partition(emissions, mask)
    gold = crf.score(emissions, tags, mask)
    decoded = crf.decode(emissions, mask)
    for b in range(batch):
        n = int(lengths[b])
        expected_z, expected_best = brute_force(crf, emissions[b], n)
        torch.testing.assert_close(log_z[b], expected_z)
        torch.testing.assert_close(gold[b], path_score(crf, emissions[b], tags[b, :n].tolist()))
        assert decoded[b] == expected_best
    nll = crf(emissions, tags, mask, reduction="none")
    torch.testing.assert_close(nll, log_z - gold)
    torch.testing.assert_close(crf(emissions, tags, mask), (log_z - gold).mean())


def test_empty_sequence_has_zero_loss_and_empty_path():
    crf = CRF(3)
    emissions = torch.randn(2, 3, 3)
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    tags = torch.zeros(2, 3, dtype=torch.long)
    assert crf(emissions, tags, mask, reduction="none")[1].item() == 0.0
    assert crf.decode(emissions, mask)[1] == []


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_constrained_crf_matches_enumeration_of_valid_paths(scheme):
    torch.manual_seed(7)
    tags = tag_names(["PER", "LOC"], scheme)
    crf = CRF(len(tags), constraints=scheme, tags=tags)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    length = 4 if scheme == "BIO" else 3
    emissions = torch.randn(3, length, len(tags)) * 3

    def valid(path):
        return allowed(path, tags, scheme)

    log_z = crf.log_partition(emissions)
    decoded = crf.decode(emissions)
    for b in range(3):
        expected_z, expected_best = brute_force(crf, emissions[b], length, valid)
        # forbidden paths carry a -1e4 penalty: exp(-1e4) vanishes next to the valid ones
        torch.testing.assert_close(log_z[b], expected_z)
        assert decoded[b] == expected_best
        assert valid(decoded[b])


def test_constraints_need_tag_names():
    with pytest.raises(ValueError, match="tag names"):
        CRF(5, constraints="BIO")
