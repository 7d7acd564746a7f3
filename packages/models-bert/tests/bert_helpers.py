"""Shared by this package's tests: a tiny config, batches, HF models on identical weights."""

import torch

TINY = dict(
    vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=128, max_position_embeddings=64,
)


def make_batch(vocab_size, lengths=(10, 7, 4), seed=1):
    """Random ids with end padding (pad id 0), its padding mask, and a source/target split."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(1, vocab_size, (len(lengths), width), generator=generator)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    types = torch.zeros_like(ids)
    types[:, width // 2:] = 1
    return ids * mask, mask, types


def assert_close_where_real(got, want, mask, atol=1e-5, rtol=0.0):
    """``got`` and ``want`` [B, L, ...] agree at the real positions of ``mask`` [B, L]. The
    encoder leaves padding out (its outputs there are 0); transformers encodes the [PAD]
    tokens there, values no task reads, so they are not compared."""
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], atol=atol, rtol=rtol)


def hf_model(cls_name, values, seed=0):
    """A transformers model (``BertForPreTraining``, ``BertModel``, …) with random weights."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.BertConfig(**values)
    model = getattr(transformers, cls_name)(config).eval()
    # random, non-zero LayerNorm and bias values, so that a weight left out would show
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
    return model
