"""``load_model(..., quantize="int8" | "int8-dynamic")`` on every backbone: each linear map
becomes int8, the outputs stay within int8 rounding of full precision, and generation and
prediction run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from s2s import Tokenizer, load_model
from s2s.nn.quantize import Int8DynamicLinear, Int8Linear, QuantizationError, int8_kernel_available

pytestmark = [
    pytest.mark.usefixtures("all_plugins"),
    pytest.mark.skipif(not int8_kernel_available(), reason="torch without the CPU int8 kernel"),
]

TEXTS = ["今天天气很好", "股市大涨", "球队赢得冠军", "央行宣布降息"]
TOKENIZER = Tokenizer.build_vocab(TEXTS, min_frequency=1)
BACKBONES = [("bert", "s2s_bert"), ("roformer", "s2s_bert"), ("nezha", "s2s_bert"), ("gpt2", "s2s_gpt2"),
             ("t5", "s2s_t5"), ("bart", "s2s_bart"), ("qwen2", "s2s_llama")]
# scheme -> (its linear map, the bound on |int8 - full| / |full| of the last hidden states)
SCHEMES = {
    "int8": (Int8Linear, 0.05),  # int8 weights (2^-8 of each row's range), bf16 activations
    "int8-dynamic": (Int8DynamicLinear, 0.06),  # and each call's input in 7 bits
}


def outputs(backbone, input_ids):
    if backbone.kind == "encoder-decoder":
        return backbone(input_ids, decoder_input_ids=input_ids[:, :4]).last_hidden_state
    return backbone(input_ids).last_hidden_state


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("name", "package"), BACKBONES, ids=[b[0] for b in BACKBONES])
def test_every_linear_map_is_int8_and_outputs_stay_close(name, package, scheme, tmp_path):
    pytest.importorskip(package)
    linear, bound = SCHEMES[scheme]
    torch.manual_seed(0)
    load_model(TOKENIZER, name, size="tiny").save_pretrained(tmp_path, TOKENIZER)
    full = load_model(TOKENIZER, name, checkpoint=tmp_path).eval()
    int8 = load_model(TOKENIZER, name, checkpoint=tmp_path, quantize=scheme)
    assert not any(isinstance(m, nn.Linear) for m in int8.modules())
    assert sum(isinstance(m, linear) for m in int8.modules()) == sum(
        isinstance(m, nn.Linear) or getattr(m, "weight_is_in_out", False) for m in full.modules()
    )
    input_ids = torch.randint(5, len(TOKENIZER), (2, 9))
    with torch.no_grad():
        expected, got = outputs(full, input_ids), outputs(int8, input_ids)
    assert ((got - expected).norm() / expected.norm()).item() < bound


@pytest.mark.parametrize(("name", "package", "task", "options"), [
    ("gpt2", "s2s_gpt2", "causal_lm", {}),
    ("t5", "s2s_t5", "seq2seq", {}),
    ("bart", "s2s_bart", "seq2seq", {}),
    ("bert", "s2s_bert", "classification", {"labels": ["a", "b"]}),
])
def test_quantized_tasks_predict_and_refuse_to_train(name, package, task, options):
    pytest.importorskip(package)
    pytest.importorskip("s2s_tasks")
    model = load_model(TOKENIZER, name, task, size="tiny", quantize="int8-dynamic", **options)
    kwargs = {"max_new_tokens": 5} if task != "classification" else {}
    predictions = model.predict(TEXTS[:2], **kwargs)
    assert len(predictions) == 2
    with pytest.raises(QuantizationError, match="inference only"):
        model.train()
    with pytest.raises(ValueError, match="quantize='int4'; supported: int8, int8-dynamic"):
        load_model(TOKENIZER, name, task, size="tiny", quantize="int4", **options)
