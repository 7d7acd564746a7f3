"""Shared by this package's tests: tiny configs, transformers' BART on identical random weights."""

import torch

from s2s.checkpoint import load_into
from s2s_bart import BartBackbone, BartConfig

# fnlp/bart-base-chinese's special ids: [PAD] 0, [CLS] 101 (bos), [SEP] 102 (start, eos, forced eos)
PAD, BOS, SEP = 0, 101, 102
TINY = dict(
    vocab_size=200, max_position_embeddings=64, d_model=32, encoder_layers=2, decoder_layers=2,
    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
    pad_token_id=PAD, bos_token_id=BOS, eos_token_id=SEP, decoder_start_token_id=SEP, forced_eos_token_id=SEP,
)


def hf_bart(values, seed=0, init_std=0.02):
    """``BartForConditionalGeneration`` with random weights, biases and LayerNorms perturbed so
    a weight left out would show, and no generation options of its own."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.BartConfig(**values, init_std=init_std, no_repeat_ngram_size=0, num_beams=1)
    model = transformers.BartForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layer_norm" in name or "layernorm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
        model.final_logits_bias.normal_(std=0.5)
    return model


def ours_like(peer, **changes) -> BartBackbone:
    """Our backbone with the peer's config and weights (through the checkpoint name mapping)."""
    config = BartConfig.from_dict({**peer.config.to_dict(), **changes})
    ours = BartBackbone(config).eval()
    load_into(ours, ours.checkpoint_state_dict(peer.state_dict(), "peer"), source="peer")
    return ours


def random_batch(vocab_size, lengths, seed=1, low=103):
    """Random ids above the special ids, padded at the end with [PAD], and the padding mask."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), max(lengths)), PAD)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(low, vocab_size, (n,), generator=generator)
        mask[row, :n] = 1
    return ids, mask
