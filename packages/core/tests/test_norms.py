"""s2s.nn.norms.RMSNorm against transformers' T5 and Llama norms, on the same weights, in every
dtype mix (the two round the normalised values differently when input and weight dtypes differ)."""

import pytest
import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm
from transformers.models.t5.modeling_t5 import T5LayerNorm

from s2s.nn.norms import RMSNorm

DTYPES = [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16), (torch.bfloat16, torch.float32),
          (torch.float32, torch.bfloat16)]


@pytest.mark.parametrize("input_dtype, weight_dtype", DTYPES)
@pytest.mark.parametrize("peer, round_to_input", [(T5LayerNorm, False), (LlamaRMSNorm, True)])
def test_rms_norm_equals_transformers(peer, round_to_input, input_dtype, weight_dtype):
    torch.manual_seed(0)
    x = (torch.randn(3, 5, 48) * 4).to(input_dtype)
    theirs = peer(48, eps=1e-6)
    ours = RMSNorm(48, 1e-6, round_to_input=round_to_input)
    with torch.no_grad():
        theirs.weight.copy_(torch.randn(48))
        ours.weight.copy_(theirs.weight)
    theirs, ours = theirs.to(weight_dtype), ours.to(weight_dtype)
    expected, got = theirs(x), ours(x)
    assert got.dtype == expected.dtype
    if input_dtype == weight_dtype == torch.float32:  # the fused op sums in another order
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    else:
        assert torch.equal(got, expected)
