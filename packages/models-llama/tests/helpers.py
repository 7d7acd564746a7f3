"""Random checkpoints saved by transformers, for the parity tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# variant -> (transformers class names, our backbone name)
PEERS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", "llama"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", "qwen2"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", "qwen3"),
    "glm": ("GlmConfig", "GlmForCausalLM", "glm"),
    "glm4": ("Glm4Config", "Glm4ForCausalLM", "glm4"),
}

TINY = dict(
    vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=256, pad_token_id=None, bos_token_id=None, eos_token_id=None,
)


def peer_model(variant: str, seed: int = 0, **overrides):
    """A random transformers model of ``variant`` in fp32, eval mode; its norms and biases drawn
    away from their 1 / 0 initialisation so that a missed one shows."""
    import transformers

    config_name, model_name, _ = PEERS[variant]
    config = getattr(transformers, config_name)(**{**TINY, **overrides})
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                param.normal_(std=0.1)
    return model


def save_peer(model, directory: Path, *, hub_layout: bool = False) -> Path:
    """``model.save_pretrained(directory)``; ``hub_layout`` rewrites config.json with the released
    folders' ``rope_theta`` / ``rope_scaling`` / ``partial_rotary_factor`` instead of transformers
    5's ``rope_parameters``."""
    model.save_pretrained(directory)
    if hub_layout:
        path = directory / "config.json"
        config = json.loads(path.read_text())
        rope = dict(config.pop("rope_parameters"))
        config["rope_theta"] = rope.pop("rope_theta")
        if "partial_rotary_factor" in rope:
            config["partial_rotary_factor"] = rope.pop("partial_rotary_factor")
        if rope.get("rope_type", "default") != "default":
            config["rope_scaling"] = rope
        path.write_text(json.dumps(config))
    return directory


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """``max |got - expected| / max |expected|``."""
    return float((got - expected).detach().abs().max() / expected.detach().abs().max().clamp(min=1e-30))
