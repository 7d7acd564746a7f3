"""s2s generate on T5 (core's EncoderDecoderDecoder) against transformers' generate:
identical token ids, greedy and beam search, one by one and as a right-padded batch."""

from __future__ import annotations

import pytest
import torch
from t5_helpers import EOS, PAD, START, peer_and_ours

from s2s.generation import decoder_for, generate

transformers = pytest.importorskip("transformers")

NEW, VOCAB = 10, 90


@pytest.fixture(scope="module", params=["v1.0", "mt5"])
def models(request, tmp_path_factory):
    # transformers 5's generate sizes its cache by num_layers: equal stacks here (the
    # forward parity tests cover num_decoder_layers != num_layers)
    return peer_and_ours(request.param, tmp_path_factory.mktemp(request.param), seed=3, factor=2.0, num_decoder_layers=2)


def texts(n=20):
    generator = torch.Generator().manual_seed(11)
    return [torch.randint(3, VOCAB, (int(torch.randint(2, 12, (1,), generator=generator)),), generator=generator) for _ in range(n)]


def right_pad(rows):
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), PAD)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    return ids, mask


def peer_generate(peer, ids, mask, **options):
    with torch.no_grad():
        out = peer.generate(
            input_ids=ids, attention_mask=mask, do_sample=False, decoder_start_token_id=START,
            eos_token_id=EOS, pad_token_id=PAD, max_new_tokens=NEW, **options,
        )
    rows = out[:, 1:].tolist()  # without the start token
    return [row[: row.index(EOS)] if EOS in row else row for row in rows]


SETTINGS = [
    dict(num_beams=1),
    dict(num_beams=1, repetition_penalty=1.3, no_repeat_ngram_size=2),
    dict(num_beams=4),
    dict(num_beams=4, length_penalty=0.6, no_repeat_ngram_size=2),
]
BATCH_ONLY = [dict(num_beams=4, length_penalty=2.0, no_repeat_ngram_size=3, early_stopping=True)]
# One by one: SETTINGS[1] and [3] (greedy and beam with every option); the batch: all of them.


def ours_generate(ours, ids, mask, **options):
    # transformers' repetition penalty and n-gram ban see the decoder start token in the history
    start = torch.full((len(ids), 1), START)
    inputs = {"input_ids": ids, "attention_mask": mask}
    return generate(decoder_for(ours, NEW), inputs, prompt_ids=start, max_new_tokens=NEW, eos_token_id=EOS, **options)


@pytest.mark.parametrize("options", [SETTINGS[1], SETTINGS[3]], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_one_by_one_identical_to_transformers(models, options):
    peer, ours = models
    for text in texts(5):
        ids, mask = text[None], torch.ones(1, len(text), dtype=torch.long)
        assert ours_generate(ours, ids, mask, **options) == peer_generate(peer, ids, mask, **options), text.tolist()


@pytest.mark.parametrize("options", SETTINGS + BATCH_ONLY, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_padded_batch_identical_to_transformers(models, options):
    peer, ours = models
    ids, mask = right_pad(texts())
    got = ours_generate(ours, ids, mask, **options)
    assert got == peer_generate(peer, ids, mask, **options)
    assert len({tuple(row) for row in got}) > 5  # the texts do not all decode alike


@pytest.mark.parametrize("options", [dict(num_beams=1), dict(num_beams=4, no_repeat_ngram_size=2)], ids=str)
def test_cross_keys_held_once_per_source_equal_the_per_row_path(models, options):
    """T5 hands its cross-attention keys/values apart (CROSS_CACHE): core's decoder keeps one
    row per source for the beams. Without that capability the contract's cache keeps one per
    row; both generate the same tokens."""
    from s2s.backbone import CROSS_CACHE
    from s2s.generation import EncoderDecoderDecoder

    _, ours = models
    per_row = type("PerRow", (type(ours),), {"capabilities": type(ours).capabilities - {CROSS_CACHE}})(ours.config).eval()
    per_row.load_state_dict(ours.state_dict())
    ids, mask = right_pad(texts())
    inputs = {"input_ids": ids, "attention_mask": mask}
    assert isinstance(decoder_for(ours, NEW), EncoderDecoderDecoder) and decoder_for(ours, NEW).holds_cross
    expected = generate(EncoderDecoderDecoder(per_row), inputs, max_new_tokens=NEW, eos_token_id=EOS, **options)
    assert generate(decoder_for(ours, NEW), inputs, max_new_tokens=NEW, eos_token_id=EOS, **options) == expected
