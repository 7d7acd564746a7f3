"""Causal language modelling on decoders (GPT-2): fine-tuning and text continuation.

Training texts become the tokenizer's template ending with its end-of-text token
(:meth:`~s2s.tokenizer.encoding.EngineTokenizer.text_ids`: ``[CLS] text [SEP]`` on a BERT
vocabulary, ``text <|im_end|>`` on Qwen2, ``<|begin_of_text|> text <|eot_id|>`` on Llama 3);
every next token is predicted (padding excluded). A text longer than ``max_length`` is cut
into consecutive windows of ``max_length`` tokens, so nothing is thrown away. Prompts for
continuation keep the template's leading specials and no end token (``[CLS] prompt``: the text
goes on); a prompt longer than the room left for ``max_new_tokens`` keeps those and its end
(the most recent context), with a warning. Generation stops at the end token (``[SEP]``, the eos).

    lm = load_model(tokenizer, "gpt2", "causal_lm")
    trainer.train(lm, lm.build_dataset(texts), collate_fn=lm.collate)
    lm.continue_text(["今天天气"], do_sample=True, top_p=0.9, seed=0)
    for piece in lm.stream("从前有座山"):
        print(piece, end="", flush=True)
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import torch

from s2s.backbone import DECODER, KV_CACHE, LM_HEAD
from s2s.data import pad_batch
from s2s.generation import GenerationRequest, decoder_for, generate, stream
from s2s.task import Task, TinyRun
from s2s.task_files import TextLineFiles

from .common import build_features, fit_max_length, keep_start_and_end, left_padded, padding_id
from .lm_loss import lm_loss

logger = logging.getLogger(__name__)


class CausalLM(Task):
    """Fine-tune a decoder on plain texts and continue prompts with it."""

    kinds = frozenset({DECODER})
    capabilities = frozenset({LM_HEAD, KV_CACHE})

    def __init__(self, backbone, tokenizer, *, max_length: int | None = None):
        super().__init__(backbone, tokenizer)
        self.max_length = fit_max_length(backbone, max_length)

    @classmethod
    def tiny_runs(cls) -> list[TinyRun]:
        texts = ["从前有座山，山里有座庙。", "今天天气很好，我们去公园散步。", "春眠不觉晓，处处闻啼鸟。"]
        return [TinyRun(texts, ["从前有座山", "今天天气"], predict_options={"max_new_tokens": 5})]

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, loss_mask=None):
        """Next-token loss over real tokens (or where ``loss_mask`` is 1); ``logits`` [scored
        tokens, vocab] at the positions that predict them."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}  # speakers, where the vocab has them
        hidden = self.backbone(input_ids, attention_mask=attention_mask, **types).last_hidden_state
        scored = (attention_mask if loss_mask is None else loss_mask)[:, 1:].bool()
        return lm_loss(self.backbone, hidden[:, :-1], input_ids[:, 1:], scored)  # t predicts t + 1

    # --- data ----------------------------------------------------------------------------

    def build_dataset(self, texts: Iterable[str], source: str = "dataset"):
        """``[CLS] text [SEP]`` features (:meth:`~s2s.tokenizer.encoding.EngineTokenizer.text_ids`); long texts are split into ``max_length`` windows. A
        list gives a list, any other iterable is encoded lazily (:func:`~s2s_tasks.common.build_features`)."""

        def encode(text, tally: Counter) -> list[dict]:
            if not isinstance(text, str) or not text.strip():
                raise ValueError("empty or not a string")
            ids = self.tokenizer.text_ids(text)
            windows = [ids[start : start + self.max_length] for start in range(0, len(ids), self.max_length)]
            return [{"input_ids": window} for window in windows if len(window) > 1]

        return build_features(texts, encode, lambda tally, count: None, source, what="texts")

    def collate(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Pad on the right; ``attention_mask`` marks the real tokens."""
        return pad_batch(
            [{**f, "attention_mask": [1] * len(f["input_ids"])} for f in features],
            {"input_ids": padding_id(self.tokenizer)},
        )

    # --- generation ----------------------------------------------------------------------

    def encode_prompt(self, prompt: str, max_new_tokens: int) -> tuple[list[int], bool]:
        """``[CLS] prompt`` ids (:meth:`~s2s.tokenizer.encoding.EngineTokenizer.prompt_ids`),
        keeping the leading specials and the end when too long; and whether it was cut."""
        if not isinstance(prompt, str):
            raise TypeError(f"a prompt must be a string, got {type(prompt).__name__}")
        ids = self.tokenizer.prompt_ids(prompt)
        room = self.max_length - max_new_tokens
        if room < 2:
            raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in max_length={self.max_length}")
        if len(ids) <= room:
            return ids, False
        return keep_start_and_end(ids, len(self.tokenizer.start_ids), room), True

    def generation_inputs(self, prompts: list[list[int]], token_types=None, next_types=None):
        """Left-padded ``input_ids`` / ``attention_mask`` (and token types) for the backbone's
        decoder; ``next_token_type_ids`` [B] are the types of the generated tokens."""
        inputs = left_padded(prompts, padding_id(self.tokenizer), self.device, token_types)
        if next_types is not None:
            inputs["next_token_type_ids"] = torch.tensor(next_types, device=self.device)
        return inputs

    def decoder(self, max_new_tokens: int):
        """The :class:`s2s.generation.Decoder` for the backbone's kind."""
        return decoder_for(self.backbone, max_new_tokens)

    def continue_text(self, prompts: Sequence[str], max_new_tokens: int = 64, **options) -> list[str]:
        """The continuation of each prompt (without the prompt). ``options`` go to
        :func:`s2s.generation.generate` (``do_sample``, ``top_k``, ``top_p``, ``temperature``,
        ``repetition_penalty``, ``num_beams``, ``seed``…); ``[UNK]`` (the tokenizer's
        ``banned_ids``) is banned by default."""
        if isinstance(prompts, str):
            raise TypeError("continue_text takes a list of prompts; wrap a single prompt in a list")
        encoded = [self.encode_prompt(p, max_new_tokens) for p in prompts]
        cut = sum(c for _, c in encoded)
        if cut:
            logger.warning("%d prompts were longer than the room left for max_new_tokens: their beginning was cut", cut)
        return self._generate([ids for ids, _ in encoded], max_new_tokens, options)

    predict = continue_text  # every task's inference call

    def _generate(self, prompts, max_new_tokens, options, token_types=None, next_types=None) -> list[str]:
        options.setdefault("banned_token_ids", self.tokenizer.banned_ids)
        inputs = self.generation_inputs(prompts, token_types, next_types)
        with self.inference():
            ids = generate(
                self.decoder(max_new_tokens), inputs, max_new_tokens=max_new_tokens,
                eos_token_id=self.tokenizer.end_id, prompt_ids=inputs["input_ids"],
                prompt_mask=inputs["attention_mask"], **options,
            )
        return [self.tokenizer.decode(row) for row in ids]

    def stream(self, prompt: str, max_new_tokens: int = 64, **options) -> Iterator[str]:
        """Yield the continuation of one prompt piece by piece as it is generated; joined, the
        pieces are ``continue_text([prompt], ...)[0]``. Leaving the loop early frees the cache."""
        ids, cut = self.encode_prompt(prompt, max_new_tokens)
        if cut:
            logger.warning("the prompt was longer than the room left for max_new_tokens: its beginning was cut")
        return self._stream(self.generation_inputs([ids]), max_new_tokens, options)

    def stream_prediction(self, item, **options) -> Iterator[str]:
        if max(options.get("beam_size", 1), options.get("num_beams", 1)) > 1:  # known at the end only
            return super().stream_prediction(item, **options)
        return self.stream(item, **options)

    def generation_request(self, item, max_new_tokens: int) -> GenerationRequest:
        self.check_input(item)
        ids, cut = self.encode_prompt(item, max_new_tokens)
        if cut:
            raise ValueError(
                f"the prompt has {len(self.tokenizer.prompt_ids(item))} tokens: with max_tokens={max_new_tokens} "
                f"it is over the model's context of {self.max_length} tokens"
            )
        return self._request([ids])

    def _request(self, prompts, token_types=None, next_types=None) -> GenerationRequest:
        inputs = self.generation_inputs(prompts, token_types, next_types)
        ends = [] if self.tokenizer.end_id is None else [self.tokenizer.end_id]
        return GenerationRequest(inputs, prompts[0], ends, self.tokenizer.banned_ids)

    def _stream(self, inputs: dict, max_new_tokens: int, options) -> Iterator[str]:
        options.setdefault("banned_token_ids", self.tokenizer.banned_ids)
        pieces = stream(
            self.decoder(max_new_tokens), inputs, self.tokenizer.decode_stream(), max_new_tokens=max_new_tokens,
            eos_token_id=self.tokenizer.end_id, prompt_ids=inputs["input_ids"], **options,
        )
        return self.stream_in_inference(pieces)

    # --- files (s2s train / predict / serve) ---------------------------------------------

    generative = True

    files = TextLineFiles()

    def predict_json(self, inputs, max_new_tokens: int = 64, beam_size: int = 1, **options) -> list[str]:
        """The continuation of each prompt (:meth:`continue_text`)."""
        return self.continue_text(list(inputs), max_new_tokens, num_beams=beam_size, **options)

