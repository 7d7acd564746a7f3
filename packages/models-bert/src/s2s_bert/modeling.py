"""The BERT encoder (BERT, Chinese RoBERTa-wwm, NEZHA), in Hugging Face's module layout.

Parameter names match ``transformers``' ``BertForPreTraining`` without the ``bert.`` prefix
(``embeddings.word_embeddings``, ``encoder.layer.N.attention.self.query``, ``pooler.dense``,
``cls.predictions.transform.dense``, ``cls.predictions.bias``), so HF checkpoints load as
they are. The MLM decoder has no weight of its own: it is the word embedding matrix.

Shapes: B batch, L new positions, T cached positions, K = T + L keys, H hidden size,
N heads, D head size (H = N * D), V vocabulary size.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from s2s.backbone import ENCODER, KV_CACHE, LM_HEAD, MASK_3D, Backbone, BackboneOutput
from s2s.nn import masks, prepacked
from s2s.nn.activations import activation
from s2s.nn.attention import attention
from s2s.nn.dropout import Dropout
from s2s.nn.packing import Packing

from . import weights
from .config import ATTN_IMPLEMENTATIONS, BertConfig

KeyValue = tuple[torch.Tensor, torch.Tensor]  # ([B, N, K, D], [B, N, K, D])


class Embeddings(nn.Module):
    """Word + token type (+ absolute position) embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig, absolute_positions: bool = True):
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        if absolute_positions:
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids, position_ids=None):  # [B, L] each
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        if position_ids is not None:
            x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))  # [B, L, H]


class SelfAttention(nn.Module):
    """Multi-head attention over the cached keys/values plus the new positions."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config  # shared: ``config.attn_implementation`` is read at every call
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = prepacked.Linear(config.hidden_size, config.hidden_size)
        self.key = prepacked.Linear(config.hidden_size, config.hidden_size)
        self.value = prepacked.Linear(config.hidden_size, config.hidden_size)
        self.dropout = Dropout(config.attention_probs_dropout_prob)

    def split_heads(self, x):  # [B, L, H] -> [B, N, L, D]
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden, mask=None, past: KeyValue | None = None, relative=None, packing=None):
        # hidden [B, L, H], or the real tokens [T, H] of ``packing``;
        # mask [B, 1, 1 or L, K] bool (True = may attend) or None
        q, k, v = self.query(hidden), self.key(hidden), self.value(hidden)
        if packing is not None:
            q, k, v = packing.pad(q), packing.pad(k), packing.pad(v)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        if hasattr(relative, "rotate"):  # RoFormer: positions turn q and k, add nothing to scores
            q, k, v = relative.rotate(q, k, v)
            relative = None
        if past is not None:
            k = torch.cat([past[0], k], dim=2)  # [B, N, K, D]
            v = torch.cat([past[1], v], dim=2)
        dropout = self.dropout.p if self.training else 0.0
        if relative is None and self.config.attn_implementation == "sdpa":
            context = attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        else:
            context = self.eager(q, k, v, mask, relative)
        context = context.transpose(1, 2).flatten(2)  # [B, L, H]
        if packing is not None:
            context = packing.unpad(context)
        return context, (k, v)

    def eager(self, q, k, v, mask, relative):
        # softmax in fp32 at least (bf16 scores under autocast; float64 stays float64)
        scores = self.scores(q, k, mask, relative)
        probs = scores.softmax(dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32))
        probs = self.dropout(probs).to(v.dtype)  # [B, N, L, K]
        if relative is None:
            return probs @ v  # [B, N, L, D]
        # relative term first: its [B, N, L, 2P + 1] intermediate is gone before probs @ v
        return relative.value_context(probs) + probs @ v

    def scores(self, q, k, mask, relative):
        """Scaled and masked scores [B, N, L, K], summed in place: one [B, N, L, K] buffer."""
        q = q / math.sqrt(self.head_dim)
        if relative is None:
            scores = q @ k.transpose(-1, -2)
        else:  # relative term first: its [B, N, L, 2P + 1] intermediate is gone before q @ k
            scores = relative.key_scores(q)
            scores += q @ k.transpose(-1, -2)
        if mask is not None:  # no row is fully masked (s2s.nn.masks.attention_mask)
            scores.masked_fill_(~mask, float("-inf"))
        return scores


class Output(nn.Module):
    """``LayerNorm(dropout(dense(x)) + residual)``: after attention (``x`` [B, L, H]) and after
    the feed-forward network (``x`` [B, L, 4H], ``in_features`` the intermediate size)."""

    def __init__(self, config: BertConfig, in_features: int):
        super().__init__()
        self.dense = prepacked.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x, residual):  # -> [B, L, H]
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = SelfAttention(config)
        self.output = Output(config, config.hidden_size)

    def forward(self, hidden, mask=None, past=None, relative=None, packing=None):
        context, key_value = self.self(hidden, mask, past, relative, packing)
        return self.output(context, hidden), key_value


class Intermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = prepacked.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)

    def forward(self, hidden):  # [B, L, H] -> [B, L, 4H]
        return self.act(self.dense(hidden))


class Layer(nn.Module):
    """One post-LayerNorm transformer block: attention, then the feed-forward network."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = Output(config, config.intermediate_size)

    def forward(self, hidden, mask=None, past=None, relative=None, packing=None, use_cache=False):
        attended, key_value = self.attention(hidden, mask, past, relative, packing)
        # (key, value) are views: returned only for a cache (FSDP warns of a unit returning views)
        return self.output(self.intermediate(attended), attended), key_value if use_cache else None


class Encoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))


class Pooler(nn.Module):
    """tanh(dense(hidden of the first token)), as pre-trained by next sentence prediction."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = prepacked.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden):  # [B, L, H] -> [B, H]
        return torch.tanh(self.dense(hidden[:, 0]))


class PredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = prepacked.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden):
        return self.LayerNorm(self.act(self.dense(hidden)))


class LMPredictionHead(nn.Module):
    """The MLM head: transform, then a decoder whose weight is the word embedding matrix."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = PredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden, word_embeddings):  # [.., H], [V, H] -> [.., V]
        return prepacked.linear(self.transform(hidden), word_embeddings, self.bias)


class BertBackbone(Backbone):
    """BERT / RoBERTa-wwm encoder with pooler and tied MLM head.

    ``forward(input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
    past_key_values=None, use_cache=False, output_hidden_states=False) -> BackboneOutput``.
    ``attention_mask`` is a padding mask [B, K] or a full mask [B, L, K] (1 = may attend),
    K counting cached positions; ``None`` lets every position see every key. With
    ``past_key_values`` (per layer ``(key, value)`` [B, N, T, D]) the new positions get
    position ids T, T+1, … unless ``position_ids`` are given.
    """

    kind = ENCODER
    capabilities = frozenset({MASK_3D, LM_HEAD, KV_CACHE})
    config_class = BertConfig
    lora_targets = {"default": ("query", "value"), "attention": ("query", "key", "value", "attention.output.dense")}
    absolute_positions = True
    # Checkpoints (s2s_bert.weights): transformers' *ForMaskedLM names, the backbone's under
    # hf_prefix; the MLM decoder is the word embeddings (not saved); pooler and MLM head may
    # be missing (newly initialised). Pass head_prefixes=("pooler.",) when the MLM head must
    # come from the checkpoint.
    checkpoint_prefixes = weights.MODEL_PREFIXES
    hf_prefix = "bert"
    hf_unprefixed = ("cls.",)
    tied_weights = weights.TIED
    vocab_weights = {weights.WORD_EMBEDDINGS: 0, weights.MLM_BIAS: 0}
    head_prefixes = weights.HEAD_PREFIXES

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.embeddings = Embeddings(config, absolute_positions=self.absolute_positions)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config)
        self.cls = nn.ModuleDict({"predictions": LMPredictionHead(config)})
        self.apply(self._init_weights)

    @property
    def attn_implementation(self) -> str:
        return self.config.attn_implementation

    @attn_implementation.setter
    def attn_implementation(self, value: str) -> None:
        if value not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation={value!r}; expected one of {ATTN_IMPLEMENTATIONS}")
        self.config.attn_implementation = value

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: tuple[KeyValue, ...] | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
    ) -> BackboneOutput:
        batch, length = input_ids.shape
        past_length = past_key_values[0][0].shape[2] if past_key_values else 0
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        position_ids, relative = self.positions(input_ids, position_ids, past_length, attention_mask)
        mask = masks.attention_mask(attention_mask, batch, length, past_length + length)  # None: nothing masked
        # Positions no query may attend to (padding) are left out: their outputs are 0. A cache
        # keeps every position; an ONNX export (tracing) records the padded shapes.
        packing = None
        if mask is not None and not (past_key_values or use_cache or torch.jit.is_tracing()):
            attended = mask.any(dim=2).squeeze(1).expand(batch, length)  # [B, L]
            if not bool(attended.all()):
                packing = Packing(attended)
        if packing is not None:
            input_ids, token_type_ids = packing.unpad(input_ids), packing.unpad(token_type_ids)
            if position_ids is not None:
                position_ids = packing.unpad(position_ids.expand(batch, length))
        hidden = self.embeddings(input_ids, token_type_ids, position_ids)  # [B, L, H] or [T, H]

        all_hidden = [hidden]
        cache = []
        for i, layer in enumerate(self.encoder.layer):
            past = past_key_values[i] if past_key_values else None
            hidden, key_value = layer(hidden, mask, past, relative, packing, use_cache)
            all_hidden.append(hidden)
            if use_cache:
                cache.append(key_value)
        if packing is not None:
            hidden = packing.pad(hidden)
            all_hidden = [packing.pad(h) for h in all_hidden] if output_hidden_states else all_hidden
        return BackboneOutput(
            last_hidden_state=hidden,
            pooler_output=self.pooler(hidden),
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            past_key_values=tuple(cache) if use_cache else None,
        )

    def positions(self, input_ids, position_ids, past_length: int, attention_mask=None):
        """Absolute position ids [B or 1, L] (or ``None``) and what attention needs of the
        positions (NEZHA's relative positions, RoFormer's rotations), from the given
        ``position_ids`` or the cache length; ``attention_mask`` as given to ``forward``."""
        if position_ids is None:
            length = input_ids.shape[1]
            position_ids = torch.arange(past_length, past_length + length, device=input_ids.device)[None]
        return position_ids, None

    def input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def blocks(self) -> nn.ModuleList:
        return self.encoder.layer

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """MLM logits [.., V] of hidden states [.., H], decoded with the word embeddings."""
        return self.cls["predictions"](hidden, self.embeddings.word_embeddings.weight)

    def rename_checkpoint(self, state_dict, source):
        return weights.to_model_names(state_dict)
