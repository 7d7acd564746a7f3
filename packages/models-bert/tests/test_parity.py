"""Parity with transformers' BertModel / BertForPreTraining on identical random weights."""

import pytest
import torch
from bert_helpers import TINY, assert_close_where_real, hf_model, make_batch

from s2s_bert import BertBackbone, BertConfig

transformers = pytest.importorskip("transformers")

BASE = dict(vocab_size=21128)  # every other value is BERT-base's default in both libraries


def ours_from(hf, values):
    model = BertBackbone(BertConfig(**values)).eval()
    weights = {k.removeprefix("bert."): v for k, v in hf.state_dict().items()}
    weights = {k: v for k, v in weights.items() if not k.startswith(("cls.seq", "cls.predictions.decoder"))}
    model.load_state_dict(weights, strict=True)
    return model


@pytest.mark.parametrize("values", [TINY, BASE], ids=["tiny", "base"])
def test_matches_transformers(values):
    hf = hf_model("BertForPreTraining", values)
    ours = ours_from(hf, values)
    ids, mask, types = make_batch(values["vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        ref_base = hf.bert(input_ids=ids, attention_mask=mask, token_type_ids=types)
        for impl in ("sdpa", "eager"):
            ours.attn_implementation = impl
            out = ours(ids, mask, types, output_hidden_states=True)
            assert_close_where_real(out.last_hidden_state, ref_base.last_hidden_state, mask)
            torch.testing.assert_close(out.pooler_output, ref_base.pooler_output, atol=1e-5, rtol=0)
            for ours_h, ref_h in zip(out.hidden_states, ref.hidden_states, strict=True):
                assert_close_where_real(ours_h, ref_h, mask)
            logits = ours.lm_logits(out.last_hidden_state)
            assert_close_where_real(logits, ref.prediction_logits, mask)
