"""Padded batches: the encoder runs on the real tokens only, and each row comes out as if
that text had been encoded alone."""

import pytest
import torch
from bert_helpers import TINY, assert_close_where_real, hf_model, make_batch

from s2s.nn.masks import unilm_mask
from s2s_bert import BertBackbone, BertConfig, NezhaBackbone, NezhaConfig

LENGTHS = (10, 7, 4)


def model_of(kind, impl="sdpa"):
    torch.manual_seed(0)
    if kind == "nezha":
        return NezhaBackbone(NezhaConfig(**TINY, max_relative_position=3)).eval()
    return BertBackbone(BertConfig(**TINY, attn_implementation=impl)).eval()


@pytest.mark.parametrize("kind,impl", [("bert", "sdpa"), ("bert", "eager"), ("nezha", "eager")])
def test_each_row_equals_its_text_alone_and_padding_is_zero(kind, impl):
    model = model_of(kind, impl)
    ids, mask, types = make_batch(TINY["vocab_size"], LENGTHS)
    with torch.no_grad():
        out = model(ids, mask, types, output_hidden_states=True)
        for row, n in enumerate(LENGTHS):
            alone = model(ids[row : row + 1, :n], token_type_ids=types[row : row + 1, :n], output_hidden_states=True)
            torch.testing.assert_close(out.last_hidden_state[row, :n], alone.last_hidden_state[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(out.pooler_output[row], alone.pooler_output[0], atol=1e-5, rtol=0)
            for batched, single in zip(out.hidden_states, alone.hidden_states, strict=True):
                torch.testing.assert_close(batched[row, :n], single[0], atol=1e-5, rtol=0)
    padding = ~mask.bool()
    for hidden in out.hidden_states:
        assert torch.equal(hidden[padding], torch.zeros_like(hidden[padding]))


@pytest.mark.parametrize("kind", ["bert", "nezha"])
def test_gradients_of_a_padded_batch_equal_the_sum_over_texts_alone(kind):
    model = model_of(kind).double()  # float64: the sums agree beyond rounding; eval: no dropout
    ids, mask, types = make_batch(TINY["vocab_size"], LENGTHS)
    out = model(ids, mask, types)
    (out.last_hidden_state[mask.bool()].pow(2).sum() + out.pooler_output.sum()).backward()
    batched = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    for row, n in enumerate(LENGTHS):
        alone = model(ids[row : row + 1, :n], token_type_ids=types[row : row + 1, :n])
        (alone.last_hidden_state.pow(2).sum() + alone.pooler_output.sum()).backward()
    assert batched
    for key, grad in batched.items():
        torch.testing.assert_close(grad, model.get_parameter(key).grad, atol=1e-10, rtol=1e-8, msg=key)


def test_left_and_inner_padding_match_transformers():
    pytest.importorskip("transformers")
    hf = hf_model("BertModel", TINY)
    model = BertBackbone(BertConfig(**TINY)).eval()
    model.load_state_dict({k: v for k, v in hf.state_dict().items()}, strict=False)
    ids, _, types = make_batch(TINY["vocab_size"], LENGTHS)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding
    mask[1, 2:5] = 0  # a hole in the middle
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
        out = model(ids, mask, types)
    assert_close_where_real(out.last_hidden_state, ref.last_hidden_state, mask)
    torch.testing.assert_close(out.pooler_output[1:], ref.pooler_output[1:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["bert", "nezha"])
def test_unilm_masked_rows_equal_their_pairs_alone(kind):
    # a full [B, L, L] mask: the positions no query may see (padding) are left out as well
    model = model_of(kind).double()
    ids, mask, types = make_batch(TINY["vocab_size"], LENGTHS)
    out = model(ids, unilm_mask(types, mask), types)
    out.last_hidden_state[mask.bool()].pow(2).sum().backward()
    batched = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    for row, n in enumerate(LENGTHS):
        row_types = types[row : row + 1, :n]
        alone = model(ids[row : row + 1, :n], unilm_mask(row_types), row_types)
        torch.testing.assert_close(out.last_hidden_state[row, :n], alone.last_hidden_state[0], atol=1e-10, rtol=0)
        alone.last_hidden_state.pow(2).sum().backward()
    for key, grad in batched.items():
        torch.testing.assert_close(grad, model.get_parameter(key).grad, atol=1e-10, rtol=1e-8, msg=key)
    padding = ~mask.bool()
    assert torch.equal(out.last_hidden_state[padding], torch.zeros_like(out.last_hidden_state[padding]))
