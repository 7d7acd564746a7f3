"""Shared by the T5 tests: transformers peers and our models on identical random weights."""

from __future__ import annotations

import torch
from torch import nn

from s2s_t5 import MT5Config, T5Backbone, T5Config
from s2s_t5.modeling import MT5Backbone

# Three recipes, tiny. ``mt5`` has d_model != num_heads * d_kv (48 vs 4 x 16), as t5-pegasus-small.
SHAPE = dict(vocab_size=90, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=3, num_heads=4,
             relative_attention_num_buckets=8, relative_attention_max_distance=20, dropout_rate=0.0)
RECIPES = {
    "v1.0": ("T5", dict(SHAPE, feed_forward_proj="relu", tie_word_embeddings=True)),
    "v1.1": ("T5", dict(SHAPE, feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
    "mt5": ("MT5", dict(SHAPE, d_model=48, d_kv=16, d_ff=96, feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
}
START, EOS, PAD = 1, 2, 0


def peer_and_ours(recipe: str, tmp_path, seed: int = 0, factor: float = 1.0, **changes):
    """transformers' model and ours with the same random weights, loaded through a ``.bin`` save."""
    import transformers

    family, values = RECIPES[recipe]
    values = dict(values, **changes, initializer_factor=factor, decoder_start_token_id=START, eos_token_id=EOS, pad_token_id=PAD)
    torch.manual_seed(seed)
    peer_cls = getattr(transformers, f"{family}ForConditionalGeneration")
    peer = peer_cls(getattr(transformers, f"{family}Config")(**values)).eval()
    if not values["tie_word_embeddings"]:  # transformers 5 ties at construction; untie as a v1.1 save would load
        peer.lm_head.weight = nn.Parameter(torch.randn_like(peer.shared.weight) * factor)
    torch.save(peer.state_dict(), tmp_path / "pytorch_model.bin")
    ours_cls = MT5Backbone if family == "MT5" else T5Backbone
    config_cls = MT5Config if family == "MT5" else T5Config
    ours = ours_cls(config_cls.from_dict(values)).eval()
    report = ours.load_pretrained(tmp_path / "pytorch_model.bin")
    assert report.empty, report
    return peer, ours


def sources(batch: int = 3, length: int = 7, seed: int = 1, vocab: int = 90):
    """Random source ids [B, S] padded on the right to different lengths, and their mask."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (batch, length), generator=generator)
    lengths = torch.randint(2, length + 1, (batch,), generator=generator)
    lengths[0] = length
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    return ids.masked_fill(mask == 0, PAD), mask
