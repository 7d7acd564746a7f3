"""``s2s serve``'s OpenAI routes through the official ``openai`` client, and its continuous
batching, backpressure, disconnects, API keys and SIGTERM.

The served folders are tiny random models saved by ``save_pretrained`` (GPT-2 causal LM and
chat with weights drawn wide enough that greedy outputs vary, a BERT embedding model); the
reference outputs are ``load_model(checkpoint=folder)``'s ``predict`` / ``reply`` /
``encode_texts`` in this process, one input at a time.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from s2s import Tokenizer, load_model, seed_everything

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from test_serve import Server  # noqa: E402

TEXTS = ["国足晋级世界杯", "股市今天大涨", "新款手机发布", "电影票房创新高", "篮球比赛精彩", "今天天气很好", "从前有座山"]
KEY = "sk-test-key"


def widen(model):
    """Draw the matrices wider than the init, so a random model's greedy choices vary."""
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0, 0.5)
    return model


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("openai")
    tokenizer = Tokenizer.build_vocab(TEXTS, min_frequency=1)
    seed_everything(0)
    widen(load_model(tokenizer, "gpt2", "causal_lm", size="tiny")).save_pretrained(root / "lm")
    widen(load_model(tokenizer, "gpt2", "chat", size="tiny")).save_pretrained(root / "chat")
    widen(load_model(tokenizer, "gpt2", "sft", size="tiny")).save_pretrained(root / "sft")
    load_model(tokenizer, "bert", "embedding", size="tiny").save_pretrained(root / "emb")
    return root


@pytest.fixture(scope="module")
def lm(folders):
    server = Server(folders / "lm", "--api-key", KEY, "--max-running", "16", "--max-tokens", "100")
    yield server
    server.stop()


def client(server, key=KEY):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=60)


def post(server, path, body, key=KEY):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    request = urllib.request.Request(server.url + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


def health(server, tensors=False):
    with urllib.request.urlopen(server.url + "/health" + ("?tensors=true" if tensors else ""), timeout=60) as answer:
        return json.loads(answer.read())


def test_completions_plain_and_streamed_equal_predict(lm, folders):
    reference = load_model(checkpoint=folders / "lm")
    api = client(lm)
    assert [m.id for m in api.models.list()] == ["lm"]
    answer = api.completions.create(model="lm", prompt="今天天气", max_tokens=12, temperature=0)
    expected = reference.continue_text(["今天天气"], 12)[0]
    assert answer.choices[0].text == expected and len(expected) >= 6
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens == 5 and answer.usage.completion_tokens <= 12
    chunks = list(api.completions.create(model="lm", prompt="今天天气", max_tokens=12, temperature=0, stream=True,
                                         stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected
    assert chunks[-1].usage.total_tokens == answer.usage.total_tokens


def test_stop_strings_end_the_text_before_them(lm, folders):
    expected = load_model(checkpoint=folders / "lm").continue_text(["股市"], 20)[0]
    stop = expected[3:5]
    answer = client(lm).completions.create(model="lm", prompt="股市", max_tokens=20, temperature=0, stop=[stop, "不会有"])
    assert answer.choices[0].text == expected[: expected.index(stop)]
    assert answer.choices[0].finish_reason == "stop"
    streamed = client(lm).completions.create(model="lm", prompt="股市", max_tokens=20, temperature=0, stop=stop, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == expected[: expected.index(stop)]


def test_sampling_with_a_seed_repeats_and_n_gives_n_choices(lm):
    api = client(lm)
    first = api.completions.create(model="lm", prompt="新款", max_tokens=10, temperature=1.0, top_p=0.9, seed=7, n=3)
    again = api.completions.create(model="lm", prompt="新款", max_tokens=10, temperature=1.0, top_p=0.9, seed=7, n=3)
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    assert len({c.text for c in first.choices}) > 1


def test_penalties_follow_openai(lm, folders):
    """The first token is the greedy one (nothing generated yet: no penalty); the penalised text
    then differs (the engine's rule itself is checked in test_scheduler)."""
    api = client(lm)
    plain = api.completions.create(model="lm", prompt="篮球", max_tokens=20, temperature=0).choices[0].text
    penalised = api.completions.create(model="lm", prompt="篮球", max_tokens=20, temperature=0,
                                       presence_penalty=2, frequency_penalty=2).choices[0].text
    assert penalised != plain
    assert penalised[0] == plain[0]  # nothing generated yet: no penalty on the first token


def test_64_concurrent_mixed_lengths_equal_one_by_one_predict(lm, folders):
    reference = load_model(checkpoint=folders / "lm")
    jobs = [(TEXTS[i % len(TEXTS)][: 1 + i % 5], 3 + (i * 7) % 40) for i in range(64)]
    expected = [reference.continue_text([prompt], n)[0] for prompt, n in jobs]
    before = health(lm)["generation"]
    api = client(lm)
    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(
            lambda job: api.completions.create(model="lm", prompt=job[0], max_tokens=job[1], temperature=0), jobs))
    assert [a.choices[0].text for a in answers] == expected
    after = health(lm)["generation"]
    tokens = after["tokens"] - before["tokens"]
    passes = after["forward_passes"] - before["forward_passes"]
    assert tokens == sum(a.usage.completion_tokens + (a.choices[0].finish_reason == "stop") for a in answers)
    assert passes < tokens / 2, (passes, tokens)  # sequences shared decoding steps


def test_keys_and_bad_fields(lm, folders):
    with pytest.raises(openai.AuthenticationError):
        client(lm, key="wrong").models.list()
    assert post(lm, "/predict", {"inputs": ["今天"]}, key="wrong")[0] == 401
    assert health(lm)["status"] == "ok"  # open
    api = client(lm)
    for field, value in (("n", 9), ("stop", ["a", "b", "c", "d", "e"]), ("temperature", 3), ("max_tokens", 0)):
        with pytest.raises(openai.BadRequestError) as error:
            api.completions.create(model="lm", prompt="今天", **{field: value})
        assert error.value.body["param"] == field and field in error.value.message
    with pytest.raises(openai.BadRequestError) as error:
        api.completions.create(model="lm", prompt="今天", max_tokens=500)
    assert "500" in error.value.message and "100" in error.value.message
    context = load_model(checkpoint=folders / "lm").max_length
    with pytest.raises(openai.BadRequestError) as error:  # the prompt and max_tokens over the context
        api.completions.create(model="lm", prompt="今天" * context, max_tokens=90)
    assert "max_tokens=90" in error.value.message and f"context of {context}" in error.value.message
    with pytest.raises(openai.NotFoundError) as error:
        api.completions.create(model="gpt-4o", prompt="今天")
    assert "'lm'" in error.value.message
    with pytest.raises(openai.BadRequestError) as error:
        api.chat.completions.create(model="lm", messages=[{"role": "user", "content": "你好"}])
    assert "serves /v1/completions" in error.value.message
    with pytest.raises(openai.BadRequestError) as error:
        api.embeddings.create(model="lm", input="你好")
    assert "serves /v1/completions" in error.value.message
    status, body, _ = post(lm, "/v1/completions", b'{"model": "lm", "prompt": ')
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    status, body, _ = post(lm, "/v1/completions", {"model": "lm", "prompt": "长" * (2 << 20)})
    assert status == 413 and "--max-body" in body["error"]["message"]
    status, body, _ = post(lm, "/v1/completions", {"model": "lm", "prompt": "今天", "logit_bias": {}})
    assert status == 400 and body["error"]["param"] == "logit_bias"


def stream_lines(server, body, key=KEY):
    """An open streaming request: the connection and a reader of its lines."""
    host, port = server.url[7:].split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    data = json.dumps(body).encode()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: " + str(len(data)).encode()
                 + b"\r\n\r\n" + data)
    return sock, sock.makefile("rb")


def test_100_clients_leaving_mid_stream_free_their_sequences(lm):
    def leave(i):
        sock, lines = stream_lines(lm, {"model": "lm", "prompt": TEXTS[i % 7], "max_tokens": 100, "stream": True})
        while not lines.readline().startswith(b"data: {"):
            pass
        sock.close()

    def idle():
        deadline = time.monotonic() + 30
        while (stats := health(lm)["generation"])["running"] + stats["waiting"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stats["running"] == 0 and stats["waiting"] == 0
        return stats

    def round_of(clients):
        with ThreadPoolExecutor(25) as pool:
            list(pool.map(leave, range(clients)))
        return idle()

    first = round_of(25)  # the model's own caches (masks, packed weights) are made here
    before = health(lm, tensors=True)["live_tensors"]
    stats = round_of(100)
    assert stats["tokens"] - first["tokens"] < 100 * 100 / 2  # they left early, not after generating all
    assert health(lm, tensors=True)["live_tensors"] <= before


def test_chat_plain_and_streamed_equal_reply(folders):
    server = Server(folders / "chat")
    try:
        reference = load_model(checkpoint=folders / "chat")
        api = client(server, key="unused")
        histories = [[TEXTS[i], TEXTS[i + 1], TEXTS[i + 2]] for i in range(5)]
        history = next(h for h in histories if reference.reply([h], 15)[0])  # a random model may end at once
        expected = reference.reply([history], 15)[0]
        messages = [{"role": "system", "content": "你是助手"}, {"role": "user", "content": history[0]},
                    {"role": "assistant", "content": history[1]}, {"role": "user", "content": history[2]}]
        answer = api.chat.completions.create(model="chat", messages=messages, max_tokens=15, temperature=0)
        assert answer.choices[0].message.content == expected and expected
        assert answer.choices[0].message.role == "assistant" and answer.object == "chat.completion"
        chunks = list(api.chat.completions.create(model="chat", messages=messages, max_completion_tokens=15,
                                                  temperature=0, stream=True))
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        for messages, param in (([], "messages"), ([{"role": "robot", "content": "x"}], "messages[0].role")):
            with pytest.raises(openai.BadRequestError) as error:
                api.chat.completions.create(model="chat", messages=messages)
            assert error.value.body["param"] == param and param in error.value.message
    finally:
        server.stop()


def test_sft_chat_plain_and_streamed_equal_predict(folders):
    """An instruction-tuned folder (the default chat template, saved with it) answers
    /v1/chat/completions as its predict answers the same messages."""
    server = Server(folders / "sft")
    try:
        reference = load_model(checkpoint=folders / "sft")
        api = client(server, key="unused")
        chats = [[{"role": "system", "content": "你是助手"}, {"role": "user", "content": TEXTS[i]},
                  {"role": "assistant", "content": TEXTS[i + 1]}, {"role": "user", "content": TEXTS[i + 2]}]
                 for i in range(5)]
        messages = next(c for c in chats if reference.predict([c], 15)[0])  # a random model may end at once
        expected = reference.predict([messages], 15)[0]
        answer = api.chat.completions.create(model="sft", messages=messages, max_tokens=15, temperature=0)
        assert answer.choices[0].message.content == expected and expected
        chunks = list(api.chat.completions.create(model="sft", messages=messages, max_tokens=15, temperature=0,
                                                  stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    finally:
        server.stop()


def test_a_qwen2_folder_serves_predict_and_completions(tmp_path):
    """A causal LM on a Qwen2 byte-level BPE (no [CLS] / [SEP] / [UNK]; its eos ends the
    text): /predict and /v1/completions answer as predict does, a one-token prompt included."""
    pytest.importorskip("s2s_llama")
    from s2s.testing.hf_tokenizers import byte_level_bpe_folder

    folder = byte_level_bpe_folder(tmp_path / "qwen", TEXTS, "qwen2", vocab_size=400)
    seed_everything(0)
    widen(load_model(Tokenizer.from_pretrained(folder), "qwen2", "causal_lm", size="tiny")).save_pretrained(folder)
    reference = load_model(checkpoint=folder)
    one = next(c for c in "".join(TEXTS) if len(reference.tokenizer.prompt_ids(c)) == 1)  # a one-token prompt
    server = Server(folder, plugins="llama,tasks")
    try:
        for prompt in (one, "今天天气"):
            expected = reference.continue_text([prompt], 8)[0]
            status, body = server.post({"inputs": [prompt], "options": {"max_new_tokens": 8}})
            assert status == 200 and json.loads(body)["outputs"] == [expected] and expected
            answer = client(server, key="unused").completions.create(model="qwen", prompt=prompt, max_tokens=8,
                                                                     temperature=0)
            assert answer.choices[0].text == expected
            assert answer.usage.prompt_tokens == len(reference.tokenizer.prompt_ids(prompt))
    finally:
        server.stop()


def test_embeddings_equal_encode_texts(folders):
    server = Server(folders / "emb")
    try:
        reference = load_model(checkpoint=folders / "emb").encode_texts(["今天天气很好", "股市"]).tolist()
        api = client(server, key="unused")
        for options in ({"encoding_format": "float"}, {}):  # unless told, the SDK asks for base64 and decodes it
            answer = api.embeddings.create(model="emb", input=["今天天气很好", "股市"], **options)
            for got, want in zip(answer.data, reference):
                assert got.embedding == pytest.approx(want, abs=1e-6)
        assert answer.usage.prompt_tokens == 8 + 4
        with pytest.raises(openai.BadRequestError) as error:
            api.chat.completions.create(model="emb", messages=[{"role": "user", "content": "你好"}])
        assert "serves /v1/embeddings" in error.value.message
    finally:
        server.stop()


def test_past_max_waiting_429_then_serving_and_sigterm_drains(folders):
    server = Server(folders / "lm", "--max-running", "1", "--max-waiting", "1")
    try:
        streams = [stream_lines(server, {"model": "lm", "prompt": "今天", "max_tokens": 80, "stream": True})
                   for _ in range(2)]  # one running, one waiting
        deadline = time.monotonic() + 30
        while health(server)["generation"]["waiting"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        status, body, headers = post(server, "/v1/completions", {"model": "lm", "prompt": "今天", "max_tokens": 2})
        assert status == 429 and headers["Retry-After"] and body["error"]["code"] == "queue_full"
        for sock, lines in streams:
            assert b"data: [DONE]" in lines.read()
            sock.close()
        assert post(server, "/v1/completions", {"model": "lm", "prompt": "今天", "max_tokens": 2})[0] == 200

        sock, lines = stream_lines(server, {"model": "lm", "prompt": "今天", "max_tokens": 80, "stream": True})
        lines.readline()
        done = {}
        thread = threading.Thread(target=lambda: done.update(body=lines.read()))
        thread.start()
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 10
        thread.join(10)
        assert b"data: [DONE]" in done["body"]  # the stream in flight was finished
    finally:
        if server.process.poll() is None:
            server.process.kill()


def test_s2s_chat_streams_replies_in_a_terminal_and_keeps_the_conversation(folders):
    import os
    import pty
    import select
    import sys

    reference = load_model(checkpoint=folders / "chat")
    histories = [[TEXTS[i]] for i in range(7)]
    first = next(h[0] for h in histories if reference.reply([h], 15)[0])
    pid, fd = pty.fork()
    if pid == 0:  # the child: s2s chat on the terminal's other end
        env = dict(os.environ, OMP_NUM_THREADS="1", S2S_LOAD_PLUGINS="gpt2,tasks")
        os.execvpe(sys.executable, [sys.executable, "-m", "s2s", "chat", str(folders / "chat"), "--max-tokens", "15"], env)
    output = b""

    def until_prompt(count):
        nonlocal output
        deadline = time.monotonic() + 180
        while output.count(b"> ") < count and time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                output += os.read(fd, 4096)
        assert output.count(b"> ") >= count, output.decode(errors="replace")
        return output.decode()

    try:
        until_prompt(1)
        os.write(fd, first.encode() + b"\n")
        reply = until_prompt(2).split(first, 1)[1].split("> ")[0].strip()
        assert reply == reference.reply([[first]], 15)[0]
        os.write(fd, "股市今天大涨\n".encode())
        second = until_prompt(3).split("股市今天大涨", 1)[1].split("> ")[0].strip()
        assert second == reference.reply([[first, reply, "股市今天大涨"]], 15)[0]  # the conversation was kept
        os.write(fd, b"/exit\n")
        assert os.waitpid(pid, 0)[1] == 0
    finally:
        os.close(fd)
