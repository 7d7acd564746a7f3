"""s2s.nn.lora against the formula by hand: base + scale * B A dropout(x), B at zero, merge and
unmerge, an [in, out] weight, prepacked inference, the config's refusals."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from s2s.nn import lora, prepacked
from s2s.nn.dropout import dropout


class InOut(nn.Module):
    """A linear map with its weight stored [in, out] (GPT-2's Conv1D)."""

    weight_is_in_out = True

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out))
        self.bias = nn.Parameter(torch.randn(n_out))

    def forward(self, x):
        return prepacked.linear(x, self.weight, self.bias, transposed=True)


def dense(layer):
    """The layer's weight as [out, in]."""
    return layer.weight.detach().t() if isinstance(layer, InOut) else layer.weight.detach()


@pytest.mark.parametrize("make", [lambda: prepacked.Linear(6, 5), lambda: nn.Linear(6, 5), lambda: InOut(6, 5)])
@pytest.mark.parametrize("rslora", [False, True])
def test_forward_is_the_formula_and_merge_folds_it(make, rslora):
    torch.manual_seed(0)
    layer = make()
    config = lora.LoraConfig(r=4, alpha=6, use_rslora=rslora)
    assert config.scale == (6 / 2 if rslora else 6 / 4)
    x = torch.randn(3, 7, 6)
    base = layer(x).detach()
    adapter = lora.attach(layer, config)
    assert adapter.A.shape == (4, 6) and adapter.B.shape == (5, 4)
    assert torch.equal(layer(x), base)  # B starts at zero: nothing changes
    assert not any("A" in n or "B" in n for n, _ in layer.named_parameters())  # not in its state dict
    with torch.no_grad():
        adapter.B.normal_()
    expected = x.double() @ dense(layer).double().t() + layer.bias.double() \
        + config.scale * x.double() @ adapter.A.double().t() @ adapter.B.double().t()
    for grad in (True, False):  # no gradients: the prepacked path, the adapter still added
        with torch.set_grad_enabled(grad):
            assert torch.allclose(layer(x).double(), expected, atol=1e-5)
    assert lora.adapted(layer)
    weight, before = layer.weight.detach().clone(), dense(layer).clone()
    lora.merge(layer)
    assert not lora.adapted(layer)
    assert torch.allclose(dense(layer), before + config.scale * adapter.B.detach() @ adapter.A.detach(), atol=1e-6)
    with torch.no_grad():  # the prepacked copy follows the merged weight
        assert torch.allclose(layer(x).double(), expected, atol=1e-5)
    lora.unmerge(layer)
    assert torch.allclose(layer.weight, weight, atol=1e-6)
    lora.detach(layer)
    assert type(layer) is type(make()) and "lora" not in layer.__dict__
    assert torch.allclose(layer(x), base, atol=1e-6)


def test_dropout_is_on_the_adapter_input_only():
    torch.manual_seed(0)
    layer = nn.Linear(8, 3)
    adapter = lora.attach(layer, lora.LoraConfig(r=2, alpha=2, dropout=0.5))
    with torch.no_grad():
        adapter.B.normal_()
    x = torch.randn(4, 8)
    torch.manual_seed(5)
    dropped = dropout(x, 0.5, True)
    expected = nn.functional.linear(x, layer.weight, layer.bias) + dropped @ adapter.A.t() @ adapter.B.t()
    torch.manual_seed(5)
    assert torch.allclose(layer(x), expected, atol=1e-6)
    adapter.eval()
    no_drop = nn.functional.linear(x, layer.weight, layer.bias) + x @ adapter.A.t() @ adapter.B.t()
    assert torch.allclose(layer(x), no_drop, atol=1e-6)


def test_gradients_reach_the_adapter_only_when_the_base_is_frozen():
    layer = nn.Linear(4, 4)
    layer.requires_grad_(False)
    adapter = lora.attach(layer, lora.LoraConfig(r=2, alpha=4))
    layer(torch.randn(2, 4)).sum().backward()
    assert layer.weight.grad is None and adapter.A.grad is not None and adapter.B.grad is not None
    assert torch.count_nonzero(adapter.A.grad) == 0  # B = 0: A's gradient is B^T (..) = 0
    assert torch.count_nonzero(adapter.B.grad) > 0


def test_under_bf16_autocast_the_output_keeps_its_dtype_as_peft_s_does():
    """PEFT's LoRA layer on the same weights: the same bf16 output, for an fp32 input (after a
    norm) and a bf16 one (after attention); fp32 adapters and their gradients stay fp32."""
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    ours = nn.Linear(16, 8)
    reference = nn.Sequential()
    reference.add_module("proj", copy.deepcopy(ours))
    reference = peft.get_peft_model(reference, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["proj"]))
    adapter = lora.attach(ours, lora.LoraConfig(r=4, alpha=8))
    with torch.no_grad():
        adapter.B.normal_()
        proj = reference.base_model.model.proj
        proj.lora_A["default"].weight.copy_(adapter.A)
        proj.lora_B["default"].weight.copy_(adapter.B)
    for x in (torch.randn(3, 16), torch.randn(3, 16).bfloat16()):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, want = ours(x), proj(x)
        assert got.dtype == want.dtype == torch.bfloat16
        torch.testing.assert_close(got, want)
    got.float().sum().backward()
    assert adapter.A.grad.dtype == adapter.B.grad.dtype == torch.float32


def test_config_refuses_bad_values_and_parses_the_command_line():
    for bad in (dict(r=0), dict(r=-2), dict(r=2.5), dict(alpha=0), dict(alpha=-1), dict(dropout=1.0)):
        with pytest.raises(ValueError, match="LoRA"):
            lora.LoraConfig(**bad)
    with pytest.raises(ValueError, match="unknown key.*rank.*keys are r, alpha"):
        lora.LoraConfig.of({"rank": 8})
    config = lora.LoraConfig.of("r=16, alpha=32,dropout=0.05,targets=q_proj+v_proj,use_rslora=true")
    assert config == lora.LoraConfig(r=16, alpha=32.0, dropout=0.05, targets=("q_proj", "v_proj"), use_rslora=True)
    assert config.scale == 32 / math.sqrt(16)
    assert lora.LoraConfig.of({"targets": "all-linear"}).targets == "all-linear"
    assert lora.LoraConfig.of({"targets": ["query"]}).targets == ("query",)
    with pytest.raises(ValueError, match="not a number"):
        lora.LoraConfig.of("r=eight")
    with pytest.raises(ValueError, match="not key=value"):
        lora.LoraConfig.of("r")
    with pytest.raises(TypeError, match="not a linear map"):
        lora.attach(nn.LayerNorm(3), lora.LoraConfig())
