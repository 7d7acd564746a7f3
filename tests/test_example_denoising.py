"""examples/seq2seq/denoising.py: BART's text infilling, against hand-worked draws."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "denoising", Path(__file__).resolve().parents[1] / "examples" / "seq2seq" / "denoising.py"
)
denoising = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(denoising)


class ScriptedRandom:
    """Gives the uniforms and the span starts it is told, in order."""

    def __init__(self, uniforms, starts):
        self.uniforms, self.starts = list(uniforms), list(starts)

    def random(self):
        return self.uniforms.pop(0)

    def randrange(self, stop):
        start = self.starts.pop(0)
        assert 0 <= start < stop
        return start


def test_poisson_counts_uniforms_until_their_product_drops_below_exp_minus_mean():
    # exp(-3) = 0.0498: 0.5 ** 4 = 0.0625 is above it, 0.5 ** 5 = 0.031 below -> 4
    assert denoising.poisson(ScriptedRandom([0.5] * 5, []), 3.0) == 4
    assert denoising.poisson(ScriptedRandom([0.01], []), 3.0) == 0


def test_mask_spans_replaces_each_span_by_one_mask():
    assert denoising.mask_spans("今天天气很好", [(0, 1), (3, 5)]) == "[MASK]天天[MASK]好"
    assert denoising.mask_spans("今天", []) == "今天"


def test_sample_spans_hand_worked():
    # 10 characters, ratio 0.3: 3 to mask. Draw 1: Poisson 0 -> length 1, at 2 -> (2, 3).
    # Draw 2: length 2 at 3 touches (2, 3) -> skipped. Draw 3: length 2 at 6 -> (6, 8); done.
    rng = ScriptedRandom([0.01, 0.5, 0.5, 0.01, 0.5, 0.5, 0.01], [2, 3, 6])
    assert denoising.sample_spans(10, rng) == [(2, 3), (6, 8)]
    rng = ScriptedRandom([0.01, 0.5, 0.5, 0.01, 0.5, 0.5, 0.01], [2, 3, 6])
    assert denoising.infill("0123456789", rng) == "01[MASK]345[MASK]89"


def test_sample_spans_cover_the_ratio_without_touching():
    for seed in range(20):
        spans = denoising.sample_spans(200, random.Random(seed))
        assert sum(end - start for start, end in spans) == 60
        assert all(0 <= start < end <= 200 for start, end in spans)
        assert all(spans[i][1] < spans[i + 1][0] for i in range(len(spans) - 1))


def test_denoising_pairs_keep_the_beginning_as_target_with_fresh_noise_per_epoch():
    texts = ["采用修正的参数建立了飞行器姿态控制系统的数学模型", "利用刚体姿态动力学方程和运动学方程建立模型"]
    pairs = denoising.denoising_pairs(texts, random.Random(0), epochs=2, target_chars=6)
    assert [target for _, target in pairs] == ["采用修正的参", "利用刚体姿态"] * 2
    assert all("[MASK]" in corrupted and len(corrupted) > 6 for corrupted, _ in pairs)
    assert pairs[0][0] != pairs[2][0]
