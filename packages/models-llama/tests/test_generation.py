"""Generation through s2s's engine against transformers' ``generate`` on the same random checkpoint:
identical tokens for greedy and beam search, the sampled distribution by a chi-square test.

The prompts are THUCNews titles from the shared data (``../shared/data``, ``S2S_SHARED_DATA``;
without it, the titles of the project's own ``data/classification`` sample), encoded by a Qwen2-style
byte-level BPE trained on them, whose vocabulary the random checkpoints take."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import torch
from helpers import PEERS, peer_model, save_peer

from s2s import load_model
from s2s.generation import decoder_for, generate
from s2s.testing import generation as testing
from s2s.testing.hf_tokenizers import byte_level_bpe
from s2s.testing.shared_data import shared_data

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[3]
SHARED_TITLES = shared_data(__file__) / "thucnews_titles" / "train.txt"
OWN_TITLES = ROOT / "data" / "classification" / "train.tsv"
NEW = 64


@cache
def titles_tokenizer():
    """The BPE of the first 200 titles (``title<TAB>label`` lines) and those titles."""
    source = SHARED_TITLES if SHARED_TITLES.is_file() else OWN_TITLES
    titles = [line.rsplit("\t", 1)[0] for line in source.read_text(encoding="utf-8").splitlines()[:200]]
    return byte_level_bpe(titles, "qwen2", vocab_size=400), titles


ENGINE = titles_tokenizer()[0]
VOCAB, EOS, PAD = ENGINE.get_vocab_size(), ENGINE.token_to_id("<|im_end|>"), ENGINE.token_to_id("<|endoftext|>")
VARIANTS = {  # variant: config overrides (GQA 7 with a tied head; GQA 2 with partial rotary and post-norms)
    "qwen2": dict(num_attention_heads=7, num_key_value_heads=1, head_dim=8, tie_word_embeddings=True),
    "glm4": dict(head_dim=16),
    "llama": dict(num_key_value_heads=4),
}


def confident(variant: str, tmp_path, init: float = 0.3):
    """transformers' model and ours on its saved checkpoint, drawn with a large ``init`` std so
    that the next token is rarely a near tie and the outputs vary from prompt to prompt."""
    peer = peer_model(variant, **VARIANTS[variant], vocab_size=VOCAB, bos_token_id=EOS, eos_token_id=EOS,
                      pad_token_id=PAD, initializer_range=init)
    ours = load_model(model_name=PEERS[variant][2], checkpoint=save_peer(peer, tmp_path)).eval()
    return peer, ours


def prompts(n=6):
    """The first tokens (2 to 11 of them) of the first ``n`` titles."""
    engine, titles = titles_tokenizer()
    lengths = torch.randint(2, 12, (n,), generator=torch.Generator().manual_seed(7)).tolist()
    return [torch.tensor(engine.encode(title).ids[:length]) for title, length in zip(titles, lengths)]


def peer_generate(peer, ids, mask, **options):
    return testing.peer_generate(peer, ids, mask, eos=EOS, pad=PAD, max_new_tokens=NEW, **options)


def ours_generate(ours, ids, mask, **options):
    inputs = {"input_ids": ids} if mask is None else {"input_ids": ids, "attention_mask": mask}
    return generate(decoder_for(ours, NEW), inputs, prompt_ids=ids, prompt_mask=mask, max_new_tokens=NEW,
                    eos_token_id=EOS, **options)


GREEDY, BEAM = dict(num_beams=1), dict(num_beams=4)
PENALTIES = dict(repetition_penalty=1.3, no_repeat_ngram_size=3)
CASES = [  # greedy and beam 4, each alone and with the penalties, over the three variants
    ("qwen2", GREEDY), ("qwen2", {**GREEDY, **PENALTIES}), ("qwen2", BEAM), ("glm4", {**BEAM, **PENALTIES}),
    ("llama", {**GREEDY, **PENALTIES}),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``models(variant)``: :func:`confident`'s pair, drawn once per variant for all its cases."""
    drawn = {}

    def get(variant):
        if variant not in drawn:
            drawn[variant] = confident(variant, tmp_path_factory.mktemp(variant))
        return drawn[variant]

    return get


@pytest.mark.parametrize(("variant", "options"), CASES, ids=lambda c: c if isinstance(c, str) else ",".join(f"{k}={v}" for k, v in c.items()))
def test_one_by_one_and_left_padded_identical_to_transformers(models, variant, options):
    peer, ours = models(variant)
    singles = [ours_generate(ours, p[None], None, **options)[0] for p in prompts(2)]
    assert singles == [peer_generate(peer, p[None], None, **options)[0] for p in prompts(2)]
    ids, mask = testing.left_pad(prompts(4), PAD)
    batch = ours_generate(ours, ids, mask, **options)
    assert batch == peer_generate(peer, ids, mask, **options)
    # Not vacuous: the outputs differ from prompt to prompt, and run far into the 64-token budget.
    # Where a row ends is the random checkpoint's choice of EOS (the rows equal transformers' either
    # way), so no particular prompt is required to run the whole budget.
    assert len({tuple(row) for row in batch}) == len(batch), "outputs should vary with the prompt"
    assert max(len(row) for row in singles + batch) >= NEW // 2, [len(row) for row in singles + batch]


def test_attention_output_in_the_layout_of_cuda_kernels(models, monkeypatch):
    """CUDA's fused attention returns [B, Q, heads, D] in memory, seen as [B, heads, Q, D]. A decode
    step's grouped queries (GQA 2 here) must not assume the CPU kernel's layout: a ``view`` did,
    and failed on an H200."""
    import s2s_llama.model

    peer, ours = models("glm4")
    sdpa = s2s_llama.model.attention
    monkeypatch.setattr(s2s_llama.model, "attention",
                        lambda *args, **kwargs: sdpa(*args, **kwargs).transpose(1, 2).contiguous().transpose(1, 2))
    ids, mask = testing.left_pad(prompts(4), PAD)
    assert ours_generate(ours, ids, mask, **GREEDY) == peer_generate(peer, ids, mask, **GREEDY)


def test_sampling_matches_transformers_distribution_by_chi_square(tmp_path):
    peer, ours = confident("qwen2", tmp_path, init=0.02)  # a flat distribution: many tokens in play
    prompt, draws = prompts(1)[0], 2000
    options = dict(temperature=0.7, top_k=20, top_p=0.9)
    # transformers' distribution of the first sampled token: its warpers on its logits
    with torch.no_grad():
        logits = peer(prompt[None]).logits[:, -1]
    import transformers

    scores = logits
    for warper in (transformers.TemperatureLogitsWarper(options["temperature"]),
                   transformers.TopKLogitsWarper(options["top_k"]), transformers.TopPLogitsWarper(options["top_p"])):
        scores = warper(prompt[None], scores)
    expected = scores.softmax(-1)[0].double()
    got = generate(decoder_for(ours, 1), {"input_ids": prompt[None].expand(draws, -1)}, max_new_tokens=1,
                   do_sample=True, seed=0, **options)
    counts = torch.bincount(torch.tensor([row[0] for row in got]), minlength=expected.numel()).double()
    assert counts[expected == 0].sum() == 0, "a token transformers' warpers remove was drawn"
    kept = expected > 0
    assert int(kept.sum()) >= 5
    statistic = float(((counts[kept] - draws * expected[kept]) ** 2 / (draws * expected[kept])).sum())
    dof = int(kept.sum()) - 1
    p_value = float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.double), torch.tensor(statistic / 2, dtype=torch.double)))
    assert p_value > 1e-3, f"chi-square {statistic:.1f} on {dof} degrees of freedom"
