"""Generation through s2s's engine against transformers' ``generate`` on the same random checkpoint:
identical tokens for greedy and beam search, the sampled distribution by a chi-square test."""

from __future__ import annotations

import pytest
import torch
from helpers import PEERS, peer_model, save_peer

from s2s import load_model
from s2s.generation import decoder_for, generate

pytest.importorskip("transformers")

EOS, PAD, NEW = 3, 0, 64
VARIANTS = {  # variant: config overrides (GQA 7 with a tied head; GQA 2 with partial rotary and post-norms)
    "qwen2": dict(num_attention_heads=7, num_key_value_heads=1, head_dim=8, tie_word_embeddings=True),
    "glm4": dict(head_dim=16),
    "llama": dict(num_key_value_heads=4),
}


def confident(variant: str, tmp_path, init: float = 0.3):
    """transformers' model and ours on its saved checkpoint, drawn with a large ``init`` std so
    that the next token is rarely a near tie and the outputs vary from prompt to prompt."""
    peer = peer_model(variant, **VARIANTS[variant], vocab_size=120, bos_token_id=EOS, eos_token_id=EOS,
                      pad_token_id=PAD, initializer_range=init)
    ours = load_model(model_name=PEERS[variant][2], checkpoint=save_peer(peer, tmp_path)).eval()
    return peer, ours


def prompts(n=8):
    generator = torch.Generator().manual_seed(7)
    return [torch.randint(4, 120, (int(torch.randint(2, 12, (1,), generator=generator)),), generator=generator)
            for _ in range(n)]


def left_pad(rows):
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), PAD)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, length - len(row):] = row
        mask[i, length - len(row):] = 1
    return ids, mask


def peer_generate(peer, ids, mask, **options):
    with torch.no_grad():
        out = peer.generate(input_ids=ids, attention_mask=mask, do_sample=False, pad_token_id=PAD,
                            eos_token_id=EOS, max_new_tokens=NEW, **options)
    rows = out[:, ids.shape[1]:].tolist()
    return [row[: row.index(EOS)] if EOS in row else row for row in rows]


def ours_generate(ours, ids, mask, **options):
    inputs = {"input_ids": ids} if mask is None else {"input_ids": ids, "attention_mask": mask}
    return generate(decoder_for(ours, NEW), inputs, prompt_ids=ids, prompt_mask=mask, max_new_tokens=NEW,
                    eos_token_id=EOS, **options)


GREEDY, BEAM = dict(num_beams=1), dict(num_beams=4)
PENALTIES = dict(repetition_penalty=1.3, no_repeat_ngram_size=3)
CASES = [  # every setting on qwen2 (GQA 7, tied); GLM-4 and Llama once each
    ("qwen2", GREEDY), ("qwen2", {**GREEDY, **PENALTIES}), ("qwen2", BEAM), ("qwen2", {**BEAM, **PENALTIES}),
    ("glm4", {**BEAM, **PENALTIES}), ("llama", {**GREEDY, **PENALTIES}),
]


@pytest.mark.parametrize(("variant", "options"), CASES, ids=lambda c: c if isinstance(c, str) else ",".join(f"{k}={v}" for k, v in c.items()))
def test_one_by_one_and_left_padded_identical_to_transformers(variant, options, tmp_path):
    peer, ours = confident(variant, tmp_path)
    singles = [ours_generate(ours, p[None], None, **options)[0] for p in prompts(2)]
    assert singles == [peer_generate(peer, p[None], None, **options)[0] for p in prompts(2)]
    assert len({tuple(row) for row in singles}) == len(singles), "outputs should vary with the prompt"
    assert any(len(row) == NEW for row in singles)
    ids, mask = left_pad(prompts(4))
    assert ours_generate(ours, ids, mask, **options) == peer_generate(peer, ids, mask, **options)


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
