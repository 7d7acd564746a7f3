"""Every variant against transformers on random checkpoints it saved: hidden states, logits and
gradients in fp32, with padded batches (left and right)."""

from __future__ import annotations

import pytest
import torch
from helpers import PEERS, peer_model, relative_error, save_peer

from s2s import load_model

pytest.importorskip("transformers")

LLAMA3 = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
              original_max_position_embeddings=16, rope_theta=500000.0)

CASES = {
    # name: (variant, config overrides, hub layout)
    "llama-gqa1-untied-llama3": ("llama", dict(num_key_value_heads=4, rope_parameters=LLAMA3), True),
    "llama-linear-bias": ("llama", dict(rope_parameters=dict(rope_type="linear", factor=2.0, rope_theta=10000.0),
                                        attention_bias=True, mlp_bias=True), False),
    "qwen2-gqa7-tied-head_dim": ("qwen2", dict(num_attention_heads=7, num_key_value_heads=1, head_dim=10,
                                               tie_word_embeddings=True), True),
    "qwen3-gqa2-head_dim": ("qwen3", dict(head_dim=20, tie_word_embeddings=False), False),
    "qwen3-tied": ("qwen3", dict(head_dim=12, tie_word_embeddings=True), True),
    "glm-partial": ("glm", dict(head_dim=16), False),
    "glm4-post-norms": ("glm4", dict(head_dim=16, num_key_value_heads=1), True),
}


def padded_batch(vocab: int, side: str):
    ids = torch.randint(0, vocab, (3, 11))
    mask = torch.ones(3, 11, dtype=torch.long)
    if side == "left":
        mask[0, :4] = 0
        mask[2, :1] = 0
    else:
        mask[0, 7:] = 0
        mask[1, 10:] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("side", ["left", "right"])
def test_hidden_states_logits_and_gradients_match_transformers(case, side, tmp_path):
    variant, overrides, hub_layout = CASES[case]
    peer = peer_model(variant, **overrides)
    ours = load_model(model_name=PEERS[variant][2], checkpoint=save_peer(peer, tmp_path, hub_layout=hub_layout))
    assert ours.config.tie_word_embeddings == peer.config.tie_word_embeddings
    ids, mask, positions = padded_batch(peer.config.vocab_size, side)
    real = mask.bool()

    expected = peer(input_ids=ids, attention_mask=mask, position_ids=positions, output_hidden_states=True)
    out = ours(ids, attention_mask=mask, output_hidden_states=True)
    logits = ours.lm_logits(out.last_hidden_state)
    assert len(out.hidden_states) == len(expected.hidden_states)
    for got, want in zip(out.hidden_states, expected.hidden_states):
        assert relative_error(got[real], want[real]) <= 1e-5
    assert relative_error(logits[real], expected.logits[real]) <= 1e-5

    weights = torch.randn_like(logits) * real[..., None]
    (expected.logits * weights).sum().backward()
    (logits * weights).sum().backward()
    theirs = dict(peer.named_parameters())
    checked = 0
    for name, param in ours.named_parameters():
        want = theirs[name].grad
        assert param.grad is not None, name
        assert relative_error(param.grad, want) <= 1e-5, name
        checked += 1
    assert checked == len(theirs)


def test_a_qwen3_checkpoint_loaded_as_qwen2_names_its_architecture(tmp_path):
    folder = save_peer(peer_model("qwen3", head_dim=12), tmp_path)
    with pytest.raises(Exception, match=r"'qwen3' model \(Qwen3ForCausalLM\).*load_model\(vocab, 'qwen3'") as error:
        load_model(model_name="qwen2", checkpoint=folder)
    assert "q_norm" in str(error.value)


@pytest.mark.parametrize("name", ["llama", "qwen2", "qwen3", "glm", "glm4"])
def test_key_value_heads_that_do_not_divide_the_heads_are_refused_naming_both(name):
    with pytest.raises(ValueError, match="num_key_value_heads=3 does not divide num_attention_heads=4"):
        load_model(model_name=f"{name}-tiny", config=dict(num_attention_heads=4, num_key_value_heads=3))


def test_the_backbone_is_found_from_config_json_alone(tmp_path):
    for variant, (_, _, name) in PEERS.items():
        folder = save_peer(peer_model(variant, head_dim=16), tmp_path / variant)
        assert type(load_model(checkpoint=folder)).__name__ == type(load_model(model_name=name, checkpoint=folder)).__name__
        assert load_model(checkpoint=folder).config.model_type == variant


def test_a_checkpoint_padding_its_vocabulary_beyond_the_tokenizer_loads(tmp_path):
    from s2s import Tokenizer

    peer = peer_model("qwen2", tie_word_embeddings=True)  # 97 rows
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"一二三四五六七八九十"]
    ours = load_model(Tokenizer({t: i for i, t in enumerate(tokens)}), "qwen2", checkpoint=save_peer(peer, tmp_path))
    assert ours.vocab_size == 97 and len(tokens) == 15
    ids = torch.randint(0, 15, (2, 6))
    with torch.no_grad():
        assert relative_error(ours.lm_logits(ours(ids).last_hidden_state), peer(ids).logits) <= 1e-5
