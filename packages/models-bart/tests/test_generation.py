"""s2s generate with BART's decoder against transformers' generate: identical token ids, with the
checkpoint's start / eos / forced-eos ids and no n-gram ban; greedy and beam 4, one by one and
as a padded batch; the source encoded once."""

import pytest
import torch
from bart_helpers import PAD, SEP, TINY, hf_bart, ours_like, random_batch

from s2s.generation import decoder_for, generate
from s2s.tokenizer import Tokenizer
from s2s_bart import BartBackbone

transformers = pytest.importorskip("transformers")

NEW = 10
SOURCES = [(int(n),) for n in torch.randint(2, 15, (12,), generator=torch.Generator().manual_seed(5))]


@pytest.fixture(scope="module", params=[None, 4.0], ids=["free", "sep-favoured"])
def models(request):
    # A larger init makes the random model confident, so outputs are not decided by near-ties;
    # a [SEP] bias makes some generations end early, others run to the forced [SEP].
    peer = hf_bart(TINY, init_std=0.2)
    if request.param is not None:
        with torch.no_grad():
            peer.final_logits_bias[0, SEP] = request.param
    return peer, ours_like(peer)


def peer_generate(peer, ids, mask, num_beams):
    with torch.no_grad():
        out = peer.generate(
            input_ids=ids, attention_mask=mask, do_sample=False, num_beams=num_beams, max_new_tokens=NEW,
            decoder_start_token_id=SEP, eos_token_id=SEP, forced_eos_token_id=SEP, pad_token_id=PAD,
            no_repeat_ngram_size=0, length_penalty=1.0, early_stopping=False, min_length=0,
        )
    rows = out[:, 1:].tolist()  # without the start token
    return [row[: row.index(SEP)] if SEP in row else row for row in rows]


@pytest.mark.parametrize("num_beams", [1, 4])
def test_one_by_one_identical_to_transformers(models, num_beams):
    peer, ours = models
    for seed, length in enumerate(SOURCES):
        ids, mask = random_batch(TINY["vocab_size"], length, seed=seed)
        got = generate(decoder_for(ours, NEW), {"input_ids": ids, "attention_mask": mask},
                       max_new_tokens=NEW, num_beams=num_beams, eos_token_id=ours.eos_token_id)
        assert got == peer_generate(peer, ids, mask, num_beams), f"source {ids.tolist()}"


@pytest.mark.parametrize("num_beams", [1, 4])
def test_padded_batch_identical_to_transformers(models, num_beams):
    peer, ours = models
    ids, mask = random_batch(TINY["vocab_size"], [n for (n,) in SOURCES], seed=9)
    got = generate(decoder_for(ours, NEW), {"input_ids": ids, "attention_mask": mask},
                   max_new_tokens=NEW, num_beams=num_beams, eos_token_id=SEP)
    assert got == peer_generate(peer, ids, mask, num_beams)


def test_forced_eos_ends_every_generation_at_the_limit(models):
    _, ours = models
    ids, mask = random_batch(TINY["vocab_size"], (6, 3))
    decoder = decoder_for(ours, 3)
    logits, state = decoder.start({"input_ids": ids, "attention_mask": mask})
    logits, state = decoder.step(logits.argmax(-1), state)
    logits, _ = decoder.step(logits.argmax(-1), state)  # the third and last token: [SEP] only
    assert (logits.argmax(-1) == SEP).all() and torch.isinf(logits).sum() == logits.numel() - len(logits)
    free = decoder_for(ours, 3, forced_eos_token_id=None)
    assert torch.isfinite(free.start({"input_ids": ids, "attention_mask": mask})[0]).all()


def test_encoder_runs_once_and_each_step_feeds_one_position(models, monkeypatch):
    _, ours = models
    calls = {"encode": 0, "lengths": []}
    encode, decode = ours.encode, ours.decode

    def counting_encode(*args, **kwargs):
        calls["encode"] += 1
        return encode(*args, **kwargs)

    def recording_decode(input_ids, *args, **kwargs):
        calls["lengths"].append(input_ids.shape[1])
        return decode(input_ids, *args, **kwargs)

    monkeypatch.setattr(ours, "encode", counting_encode)
    monkeypatch.setattr(ours, "decode", recording_decode)
    ids, mask = random_batch(TINY["vocab_size"], (7, 4))
    generate(decoder_for(ours, NEW), {"input_ids": ids, "attention_mask": mask}, max_new_tokens=NEW, num_beams=4, eos_token_id=SEP)
    assert calls["encode"] == 1 and set(calls["lengths"]) == {1}


def test_decoding_strips_specials_and_joins_chinese_without_spaces():
    vocab = Tokenizer({t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"中文标题生成", "bart", "##s"])})
    # what BART's generate returns for the fnlp release: [SEP] [CLS] ... [SEP]
    ids = [vocab.sep_id, vocab.cls_id, *(vocab.token_to_id(c) for c in "中文标题"), vocab.token_to_id("bart"),
           vocab.token_to_id("##s"), vocab.token_to_id("生"), vocab.sep_id, vocab.pad_id]
    assert vocab.decode(ids) == "中文标题barts生"


@pytest.mark.parametrize("index", [[1, 0, 0], [0, 0, 1, 1], [2, 0, 3], [3, 2, 1, 0], [0, 2, 3], [1]])
def test_reorder_equals_the_per_row_path(models, index):
    """Core's decoder on BART holds the cross keys/values once per source (CROSS_CACHE); rows kept on their
    sources or moved, it steps like the contract's per-row cache (every row copied)."""
    from s2s.backbone import CROSS_CACHE
    from s2s.generation import EncoderDecoderDecoder

    _, ours = models
    per_row = type("PerRow", (BartBackbone,), {"capabilities": BartBackbone.capabilities - {CROSS_CACHE}})(ours.config)
    per_row.load_state_dict(ours.state_dict())
    per_row.eval()
    ids, mask = random_batch(TINY["vocab_size"], (6, 3))
    inputs = {"input_ids": ids, "attention_mask": mask}
    ours_decoder, generic = decoder_for(ours, NEW, forced_eos_token_id=None), EncoderDecoderDecoder(per_row)
    (_, state), (_, generic_state) = ours_decoder.start(inputs), generic.start(inputs)
    for step_index in ([0, 0, 1, 1], index):  # beams of each source, then the case
        tokens = torch.arange(110, 110 + len(step_index))
        state = ours_decoder.reorder(state, torch.tensor(step_index))
        generic_state = generic.reorder(generic_state, torch.tensor(step_index))
        logits, state = ours_decoder.step(tokens, state)
        expected, generic_state = generic.step(tokens, generic_state)
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
