"""Streaming from every generative task: the joined pieces equal the non-streamed output (greedy,
and sampling with the same seed) for UniLM (BERT, RoFormer), GPT-2, BART and T5 seq2seq, causal
LM and chat; the first piece comes after the first search step; leaving early frees the cache."""

from __future__ import annotations

import gc

import pytest
import torch

from s2s import Tokenizer, load_model

TEXTS = ["今天天气很好，我们去公园散步。", "北京队在比赛中以三比一战胜上海队。", "央行宣布下调存款准备金率。"]
BERT_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=96)
GPT2_TINY = dict(n_embd=32, n_layer=2, n_head=4, n_positions=96)
SEQ2SEQ_MODELS = {
    "bert": BERT_TINY,
    "roformer": BERT_TINY,
    "gpt2": GPT2_TINY,
    "bart": dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
                 encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=96),
    "t5": dict(d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=4),
}
OPTIONS = [dict(), dict(do_sample=True, top_k=20, seed=3)]
# Backbones from packages the tasks suite does not install; nox's "all" suite runs their cases.
PACKAGES = {"gpt2": "s2s_gpt2", "bart": "s2s_bart", "t5": "s2s_t5"}


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab(TEXTS, min_frequency=1)


def confident(model):
    """A random model that does not end at once: generation runs the whole length."""
    torch.manual_seed(0)
    with torch.no_grad():
        model.backbone.input_embeddings().weight.mul_(4)
    return model.eval()


def task(tokenizer, model_name, task_name, config):
    if model_name in PACKAGES:
        pytest.importorskip(PACKAGES[model_name], reason=f"needs the package of {model_name}")
    torch.manual_seed(0)
    size = "tiny" if model_name in ("bart", "t5") else None
    return confident(load_model(tokenizer, model_name, task_name, size=size, config=config))


@pytest.mark.parametrize("options", OPTIONS, ids=["greedy", "sampling"])
@pytest.mark.parametrize("model_name", sorted(SEQ2SEQ_MODELS))
def test_seq2seq_stream_joins_to_predict(tokenizer, model_name, options):
    model = task(tokenizer, model_name, "seq2seq", SEQ2SEQ_MODELS[model_name])
    for text in TEXTS:
        expected = model.predict([text], max_new_tokens=12, **options)[0]
        assert "".join(model.stream(text, max_new_tokens=12, **options)) == expected


@pytest.mark.parametrize("options", OPTIONS, ids=["greedy", "sampling"])
def test_causal_lm_stream_joins_to_continue_text(tokenizer, options):
    model = task(tokenizer, "gpt2", "causal_lm", GPT2_TINY)
    for text in TEXTS:
        expected = model.continue_text([text[:5]], max_new_tokens=12, **options)[0]
        assert "".join(model.stream(text[:5], max_new_tokens=12, **options)) == expected


@pytest.mark.parametrize("options", OPTIONS, ids=["greedy", "sampling"])
def test_chat_stream_reply_joins_to_reply(tokenizer, options):
    model = task(tokenizer, "gpt2", "chat", GPT2_TINY)
    for history in ([TEXTS[0]], TEXTS[:2], TEXTS):
        expected = model.reply([history], max_new_tokens=12, **options)[0]
        assert "".join(model.stream_reply(history, max_new_tokens=12, **options)) == expected


class CountingDecoder:
    """Wraps a task's decoder and counts the search steps run so far."""

    def __init__(self, inner):
        self.inner, self.steps = inner, 0

    def start(self, inputs):
        return self.inner.start(inputs)

    def step(self, tokens, state):
        self.steps += 1
        return self.inner.step(tokens, state)

    def reorder(self, state, index):
        return self.inner.reorder(state, index)


@pytest.mark.parametrize(("model_name", "task_name"), [("bert", "seq2seq"), ("bart", "seq2seq"), ("gpt2", "causal_lm")])
def test_the_first_piece_of_a_64_token_stream_comes_after_the_first_step(tokenizer, model_name, task_name, monkeypatch):
    config = GPT2_TINY if model_name == "gpt2" else SEQ2SEQ_MODELS[model_name]
    model = task(tokenizer, model_name, task_name, {**config})
    made = []
    monkeypatch.setattr(model, "decoder", lambda n: made.append(CountingDecoder(type(model).decoder(model, n))) or made[-1])
    special = [model.tokenizer.token_to_id(t) for t in model.tokenizer.special_tokens]  # text at every step
    pieces = model.stream(TEXTS[0][:6], max_new_tokens=64, banned_token_ids=special)
    first = next(pieces)
    assert first and made[0].steps == 0  # the first token comes from start(): no step yet
    rest = list(pieces)
    assert made[0].steps == 63 and len(rest) >= 1


def live_objects() -> tuple[int, int, int]:
    """What the garbage collector sees alive: tensors, the bytes of their distinct storages, and
    all objects; a cache kept by a stream would show in the first two, anything else in the last."""
    gc.collect()
    objects = gc.get_objects()
    tensors = [obj for obj in objects if issubclass(type(obj), torch.Tensor)]
    return len(tensors), sum(storage_bytes(t) for t in {storage_key(t): t for t in tensors}.values()), len(objects)


def storage_key(tensor: torch.Tensor):
    try:
        return tensor.untyped_storage().data_ptr()
    except NotImplementedError:  # an opaque tensor (a prepacked weight) has no storage to share
        return id(tensor)


def storage_bytes(tensor: torch.Tensor) -> int:
    try:
        return tensor.untyped_storage().nbytes()
    except NotImplementedError:
        return tensor.numel() * tensor.element_size()


@pytest.fixture
def one_thread():
    """1,000 tiny forward passes take ~2 s on one thread and can take 30 s on two threads of a
    loaded machine (the threads wait for each other on every small op)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("model_name", "task_name"), [("bert", "seq2seq"), ("gpt2", "chat")])
def test_leaving_a_stream_early_frees_its_cache(tokenizer, model_name, task_name, one_thread):
    config = GPT2_TINY if model_name == "gpt2" else SEQ2SEQ_MODELS[model_name]
    model = task(tokenizer, model_name, task_name, config)
    calls = 1000

    def stream_once():
        pieces = model.stream_reply([TEXTS[0]], max_new_tokens=30) if task_name == "chat" else model.stream(TEXTS[0], max_new_tokens=30)
        for _ in pieces:
            break

    stream_once()  # anything made once (lazy buffers) is made before counting
    tensors, tensor_bytes, objects = live_objects()
    for _ in range(calls):
        stream_once()
    after = live_objects()
    assert after[:2] == (tensors, tensor_bytes)  # no cache (keys and values) left behind
    assert after[2] - objects < calls // 10  # nothing else kept per call either


def test_stream_prediction_streams_greedy_and_gives_beam_search_whole(tokenizer):
    pytest.importorskip("s2s_gpt2", reason="needs s2s-models-gpt2")
    model = task(tokenizer, "bert", "seq2seq", BERT_TINY)
    assert "".join(model.stream_prediction(TEXTS[0], max_new_tokens=8)) == model.predict([TEXTS[0]], max_new_tokens=8)[0]
    whole = list(model.stream_prediction(TEXTS[0], max_new_tokens=8, beam_size=3))
    assert whole == model.predict([TEXTS[0]], max_new_tokens=8, beam_size=3)
    chat = task(tokenizer, "gpt2", "chat", GPT2_TINY)
    assert list(chat.stream_prediction([TEXTS[0]], max_new_tokens=8, beam_size=2)) == chat.reply([[TEXTS[0]]], max_new_tokens=8, num_beams=2)
