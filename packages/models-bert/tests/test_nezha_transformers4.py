"""NEZHA against transformers 4.x ``NezhaModel`` (removed in transformers 5).

Skipped unless the installed transformers still ships ``NezhaModel``; the nox session
``bert-nezha-t4`` (see the package README) installs one.
"""

import pytest
import torch
from bert_helpers import TINY, assert_close_where_real, make_batch

from s2s_bert import NezhaBackbone, NezhaConfig

transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "NezhaModel"):
    pytest.skip("this transformers has no NezhaModel (it left in 5.0)", allow_module_level=True)

TINY_NEZHA = dict(TINY, max_relative_position=3)  # short, so that 10 tokens exercise the clipping
BASE_NEZHA = dict(vocab_size=21128, max_position_embeddings=512, type_vocab_size=2)


def hf_nezha(values, seed=0):
    torch.manual_seed(seed)
    model = transformers.NezhaForPreTraining(transformers.NezhaConfig(**values)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
    return model


def assert_matches(ours, hf):
    ids, mask, types = make_batch(ours.config.vocab_size)
    inputs = dict(input_ids=ids, attention_mask=mask, token_type_ids=types)
    with torch.no_grad():
        ref = hf.nezha(**inputs)
        out = ours.eval()(ids, mask, types)
        assert_close_where_real(out.last_hidden_state, ref.last_hidden_state, mask)
        if isinstance(hf, transformers.NezhaForPreTraining):
            torch.testing.assert_close(out.pooler_output, ref.pooler_output, atol=1e-5, rtol=0)
            logits = hf(**inputs).prediction_logits
        else:
            logits = hf(**inputs).logits
        assert_close_where_real(ours.lm_logits(out.last_hidden_state), logits, mask)


@pytest.mark.parametrize("values", [TINY_NEZHA, BASE_NEZHA], ids=["tiny", "base"])
@pytest.mark.parametrize("serialization", ["safetensors", "bin"])
def test_transformers_save_loads_exactly_and_matches(tmp_path, values, serialization):
    if values is BASE_NEZHA and serialization == "bin":
        pytest.skip("one base round is enough")
    hf = hf_nezha(values)
    hf.save_pretrained(tmp_path, safe_serialization=serialization == "safetensors")
    ours = NezhaBackbone.from_pretrained(tmp_path)
    assert ours.load_pretrained(tmp_path).empty
    assert_matches(ours, hf)


def test_saved_folder_loads_in_transformers_nezha(tmp_path):
    torch.manual_seed(1)
    ours = NezhaBackbone(NezhaConfig(**TINY_NEZHA))
    with torch.no_grad():
        ours.cls["predictions"].bias.normal_()
    ours.save_pretrained(tmp_path)
    hf, info = transformers.NezhaForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    assert_matches(ours, hf.eval())
