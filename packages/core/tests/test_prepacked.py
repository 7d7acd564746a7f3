"""Prepacked linear maps against the product computed in float64, and the packed copies'
life: made under no_grad on CPU, remade when the weight changes, freed by training mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from s2s.backbone import Backbone
from s2s.nn import cpu_bf16, prepacked

needs_onednn = pytest.mark.skipif(not prepacked.available(), reason="this torch has no working oneDNN linear ops")


def exact(x, weight, bias):
    return x.double() @ weight.double().t() + (0 if bias is None else bias.double())


@pytest.mark.parametrize("rows", [1, 4, 33])
@pytest.mark.parametrize("with_bias", [True, False])
def test_products_equal_float64_products(rows, with_bias):
    generator = torch.Generator().manual_seed(rows)
    weight = torch.randn(96, 64, generator=generator) * 0.1
    bias = torch.randn(96, generator=generator) if with_bias else None
    x = torch.randn(rows, 3, 64, generator=generator)
    expected = exact(x, weight, bias)
    inputs = {"contiguous": x, "a slice": x[:, -1], "transposed": x.transpose(0, 1), "a vector": x[0, 0]}
    with torch.no_grad():
        for name, value in inputs.items():
            got = prepacked.linear(value, weight, bias)
            want = exact(value, weight, bias)
            assert got.shape == want.shape, name
            torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0, msg=name)
        # a weight stored [in, out] (GPT-2's Conv1D)
        got = prepacked.linear(x, weight.t().contiguous(), bias, transposed=True)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=0)


@needs_onednn
@pytest.mark.parametrize("threads", [1, 2])
def test_one_row_on_one_thread_takes_a_dense_transposed_copy(threads, monkeypatch):
    """On an AVX2 CPU (as the products were tuned there; the ops run on any CPU): one thread, an
    ``[in, out]`` copy; two threads, a packed one."""
    monkeypatch.setattr(cpu_bf16, "slow_bf16_products", lambda: True)
    layer, conv_weight = prepacked.Linear(512, 512), torch.randn(512, 512) * 0.02  # not small (SMALL_WEIGHT_VALUES)
    x = torch.randn(1, 512)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            got = layer(x)
            got_conv = prepacked.linear(x, conv_weight, None, transposed=True)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(got.double(), exact(x, layer.weight, layer.bias), atol=1e-5, rtol=0)
    torch.testing.assert_close(got_conv.double(), x.double() @ conv_weight.double(), atol=1e-5, rtol=0)
    expected_form = "in_out" if threads == 1 else "packed"
    assert set(prepacked._COPIES[layer.weight]) == {expected_form}
    # an [in, out] weight is used as it is on one thread: no copy
    assert conv_weight not in prepacked._COPIES if threads == 1 else "packed from in_out" in prepacked._COPIES[conv_weight]


@needs_onednn
def test_one_row_on_threads_of_a_cpu_above_avx2_is_the_plain_product(monkeypatch):
    monkeypatch.setattr(cpu_bf16, "slow_bf16_products", lambda: False)
    layer, conv_weight = prepacked.Linear(512, 512), torch.randn(512, 512) * 0.02
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            x = torch.randn(1, 512)
            assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
            assert torch.equal(prepacked.linear(x, conv_weight, None, transposed=True), x @ conv_weight)
            assert layer.weight not in prepacked._COPIES and conv_weight not in prepacked._COPIES  # no copy
            layer(torch.randn(2, 512))  # two rows: prepacked
    finally:
        torch.set_num_threads(before)
    assert set(prepacked._COPIES[layer.weight]) == {"packed"}


@needs_onednn
@pytest.mark.parametrize("threads", [1, 2])
def test_one_row_by_a_small_weight_is_the_plain_product(threads):
    layer, conv_weight = prepacked.Linear(896, 128), torch.randn(896, 128)  # a Qwen2.5-0.5B k/v projection
    x = torch.randn(1, 1, 896)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            got, got_conv = layer(x), prepacked.linear(x, conv_weight, None, transposed=True)
            assert torch.equal(got, F.linear(x, layer.weight, layer.bias))
            assert torch.equal(got_conv, x @ conv_weight)
            layer(torch.randn(2, 896))  # two rows: prepacked
    finally:
        torch.set_num_threads(before)
    assert conv_weight not in prepacked._COPIES
    assert set(prepacked._COPIES[layer.weight]) == {"packed"}


@needs_onednn
@pytest.mark.parametrize("rows", [1, 5])
def test_linears_stack_the_weights_into_one_product_equal_to_each_layers(rows):
    torch.manual_seed(rows)
    layers = [prepacked.Linear(64, 96), prepacked.Linear(64, 16, bias=False), prepacked.Linear(64, 16)]
    x = torch.randn(rows, 3, 64)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            outs = prepacked.linears(x, layers)
            assert set(prepacked._COPIES[layers[0].weight]) == {"stacked"}  # no copy per layer
            for out, layer in zip(outs, layers):
                torch.testing.assert_close(out.double(), exact(x, layer.weight, layer.bias), atol=1e-5, rtol=0)
            stacked = prepacked._COPIES[layers[0].weight]["stacked"][1]
            prepacked.linears(x, layers)
            assert prepacked._COPIES[layers[0].weight]["stacked"][1] is stacked  # made once
            layers[2].bias.add_(1.0)  # any tensor of the group changes: made again
            layers[1].weight.mul_(-2.0)
            outs = prepacked.linears(x, layers)
            for out, layer in zip(outs, layers):
                torch.testing.assert_close(out.double(), exact(x, layer.weight, layer.bias), atol=1e-5, rtol=0)
    finally:
        torch.set_num_threads(before)


@needs_onednn
def test_linears_leave_other_layers_and_training_to_each_layer():
    from s2s.nn import lora

    layers = [prepacked.Linear(64, 32), prepacked.Linear(64, 32)]
    x = torch.randn(4, 64)
    outs = prepacked.linears(x, layers)  # gradients on: each layer's plain product
    assert all(torch.equal(out, F.linear(x, layer.weight, layer.bias)) for out, layer in zip(outs, layers))
    assert layers[0].weight not in prepacked._COPIES
    with torch.no_grad():
        prepacked.linears(x[:1], layers)  # one row by small weights: each layer's plain product
    assert layers[0].weight not in prepacked._COPIES
    lora.attach(layers[1], lora.LoraConfig(r=2))
    with torch.no_grad():
        torch.nn.init.normal_(lora.adapter_of(layers[1]).B)
        outs = prepacked.linears(x, layers)
        torch.testing.assert_close(outs[1], layers[1](x))  # the adapter's delta included
        assert not torch.allclose(outs[1], F.linear(x, layers[1].weight, layers[1].bias))
    assert "stacked" not in prepacked._COPIES.get(layers[0].weight, {})


@needs_onednn
def test_packed_copy_follows_in_place_updates_and_replacement():
    layer = prepacked.Linear(8, 5)
    x = torch.randn(2, 8)
    with torch.no_grad():
        layer(x)
        assert layer.weight in prepacked._COPIES
        layer.weight.mul_(-3.0)  # an optimizer step, load_state_dict
        torch.testing.assert_close(layer(x).double(), exact(x, layer.weight, layer.bias), atol=1e-5, rtol=0)
        layer.weight.data = torch.randn(5, 8)  # new storage, same parameter
        torch.testing.assert_close(layer(x).double(), exact(x, layer.weight, layer.bias), atol=1e-5, rtol=0)
        layer.weight = torch.nn.Parameter(torch.randn(5, 8))  # a new parameter
        torch.testing.assert_close(layer(x).double(), exact(x, layer.weight, layer.bias), atol=1e-5, rtol=0)
        packed = prepacked._COPIES[layer.weight]["packed"][1]
        layer(x)
        assert prepacked._COPIES[layer.weight]["packed"][1] is packed  # unchanged weight: packed once


@needs_onednn
def test_only_inference_on_cpu_fp32_uses_packed_weights():
    layer = prepacked.Linear(8, 5)
    x = torch.randn(3, 8, requires_grad=True)
    layer(x).sum().backward()  # gradients on: the plain product, which autograd can follow
    torch.testing.assert_close(x.grad, layer.weight.sum(0).expand(3, 8).detach())
    assert layer.weight not in prepacked._COPIES
    with torch.no_grad():
        double = prepacked.Linear(8, 5).double()
        double(x.double())
        assert double.weight not in prepacked._COPIES
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert layer(x).dtype == torch.bfloat16  # autocast keeps its lower precision
        assert layer.weight not in prepacked._COPIES
    with torch.inference_mode():
        layer(x)
    assert layer.weight in prepacked._COPIES
    prepacked.release(layer)
    prepacked.enabled = False
    try:
        with torch.no_grad():
            layer(x)
    finally:
        prepacked.enabled = True
    assert layer.weight not in prepacked._COPIES


@needs_onednn
def test_backbones_free_their_packed_weights_when_training():
    class Tiny(Backbone):
        def __init__(self):
            super().__init__(config=None)
            self.proj = prepacked.Linear(4, 4)

    model = Tiny().eval()
    with torch.no_grad():
        model.proj(torch.randn(2, 4))
    assert model.proj.weight in prepacked._COPIES
    model.eval()
    assert model.proj.weight in prepacked._COPIES
    model.train()
    assert model.proj.weight not in prepacked._COPIES


needs_bf16_kernels = pytest.mark.skipif(
    cpu_bf16.slow_bf16_products() or not prepacked.available(torch.bfloat16), reason="a CPU without oneDNN bf16 kernels (AVX2)")


@needs_bf16_kernels
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows", [1, 4, 33])
@pytest.mark.parametrize("with_bias", [True, False])
def test_bf16_products_on_a_cpu_with_bf16_kernels_take_packed_weights(threads, rows, with_bias):
    """One rounding to bf16 of the exact product of the bf16 values, by a packed copy: for one
    row on one thread too, and for a small weight (unlike fp32's plain products there)."""
    generator = torch.Generator().manual_seed(rows)
    weight = (torch.randn(96, 64, generator=generator) * 0.1).bfloat16()
    bias = torch.randn(96, generator=generator).bfloat16() if with_bias else None
    x = torch.randn(rows, 3, 64, generator=generator).bfloat16()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            got = prepacked.linear(x, weight, bias)
            got_conv = prepacked.linear(x, weight.t().contiguous(), bias, transposed=True)
    finally:
        torch.set_num_threads(before)
    for value in (got, got_conv):
        assert value.dtype == torch.bfloat16
        torch.testing.assert_close(value.double(), exact(x, weight, bias), rtol=2**-8, atol=1e-5)
    assert set(prepacked._COPIES[weight]) == {"packed"}


@needs_bf16_kernels
def test_bf16_linears_stack_into_one_packed_product_equal_to_each_layers():
    torch.manual_seed(0)
    layers = [prepacked.Linear(64, 96), prepacked.Linear(64, 16, bias=False), prepacked.Linear(64, 16)]
    for layer in layers:
        layer.bfloat16()
    x = torch.randn(1, 3, 64).bfloat16()
    with torch.no_grad():
        outs = prepacked.linears(x, layers)
    assert set(prepacked._COPIES[layers[0].weight]) == {"stacked"}
    for out, layer in zip(outs, layers):
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.double(), exact(x, layer.weight, layer.bias), rtol=2**-8, atol=1e-5)


@pytest.fixture
def bf16_path(monkeypatch):
    """Counts the bf16 products converted to fp32 by blocks, on a CPU said to lack bf16 kernels
    (as AVX2 is; the path's arithmetic runs on any CPU)."""
    monkeypatch.setattr(cpu_bf16, "slow_bf16_products", lambda: True)
    monkeypatch.setattr(prepacked, "_BLOCK_BYTES", 4 * 64 * 7)  # blocks of 7 weight rows: 96 = 13 x 7 + 5
    monkeypatch.setattr(prepacked, "_UP_CONVERT_VALUES", 96 * 64)
    monkeypatch.setattr(prepacked, "bf16_up_convert", True)
    calls = []
    up_converted = prepacked._up_converted
    monkeypatch.setattr(prepacked, "_up_converted", lambda *args: calls.append(args[0].shape[0]) or up_converted(*args))
    return calls


@pytest.mark.parametrize("rows", [1, 4, 8, 33])
@pytest.mark.parametrize("with_bias", [True, False])
def test_bf16_inference_products_are_bf16_roundings_of_the_exact_products(bf16_path, rows, with_bias):
    generator = torch.Generator().manual_seed(rows)
    weight = (torch.randn(96, 64, generator=generator) * 0.1).bfloat16()
    bias = torch.randn(96, generator=generator).bfloat16() if with_bias else None
    x = torch.randn(rows, 3, 64, generator=generator).bfloat16()
    want = exact(x, weight, bias)  # of the same bf16 values, in float64
    with torch.no_grad():
        got = prepacked.linear(x, weight, bias)
        got_conv = prepacked.linear(x, weight.t().contiguous(), bias, transposed=True)
        plain = torch.nn.functional.linear(x, weight, bias)
    for value in (got, got_conv):
        assert value.dtype == torch.bfloat16 and value.shape == want.shape
        # one rounding to bf16 (8 significant bits) of a sum taken in fp32
        torch.testing.assert_close(value.double(), want, rtol=2**-8, atol=1e-5)
        torch.testing.assert_close(value, plain)  # bf16 tolerance of torch's own product
    assert bf16_path == ([] if 3 * rows < prepacked.UP_CONVERT_ROWS else [3 * rows, 3 * rows])


def test_bf16_path_is_taken_only_for_cpu_inference_on_bf16_tensors(bf16_path, monkeypatch):
    weight, conv_weight = torch.randn(96, 64).bfloat16(), torch.randn(64, 96).bfloat16()
    x = torch.randn(8, 64).bfloat16()
    with torch.no_grad():
        prepacked.linear(x, weight, None)
        prepacked.linear(x[:1], conv_weight, None, transposed=True)  # one row: torch's product...
        prepacked.linear(x, weight[:95], None)  # a smaller weight: torch's product
    assert bf16_path == [8]
    assert set(prepacked._COPIES[conv_weight]) == {"out_in"}  # ...by a dense [out, in] copy
    assert weight not in prepacked._COPIES  # an [out, in] weight is used as it is
    prepacked.linear(x, weight, None)  # gradients on
    prepacked.linear(x.requires_grad_(), weight, None).sum().backward()  # training: cpu_bf16
    with torch.no_grad():
        prepacked.linear(x.float(), weight.float(), None)  # fp32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            prepacked.linear(x.float(), weight.float(), None)
        prepacked.enabled = False
        try:
            prepacked.linear(x, weight, None)
        finally:
            prepacked.enabled = True
        monkeypatch.setattr(cpu_bf16, "slow_bf16_products", lambda: False)  # a CPU with bf16 kernels
        prepacked.linear(x, weight, None)
    assert bf16_path == [8]
    monkeypatch.setattr(prepacked, "bf16_up_convert", False)  # the default
    with torch.no_grad():
        prepacked.linear(x, weight, None)
    assert bf16_path == [8]
