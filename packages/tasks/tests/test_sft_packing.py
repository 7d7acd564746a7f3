"""``pack=True``: a packed batch's loss equals the same chats' loss unpacked (within 1e-5), on
GPT-2 and, where s2s-models-llama is installed, a Qwen2-shaped decoder; an encoder-decoder
reads each prompt as its source and each answer as its target."""

from __future__ import annotations

import pytest
import torch

from s2s import Tokenizer, load_model

pytest.importorskip("s2s_gpt2", reason="needs s2s-models-gpt2")
pytest.importorskip("jinja2")

CHATS = [
    [{"role": "user", "content": "倒序：甲乙丙"}, {"role": "assistant", "content": "丙乙甲"}],
    [{"role": "system", "content": "只回答数字"}, {"role": "user", "content": "一加一"}, {"role": "assistant", "content": "二"},
     {"role": "user", "content": "再加三"}, {"role": "assistant", "content": "五"}],
    [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好，有什么可以帮你的吗"}],
    [{"role": "user", "content": "下一个：甲丁"}, {"role": "assistant", "content": "乙戊"}],
    [{"role": "user", "content": "今天天气怎么样"}, {"role": "assistant", "content": "晴"}],
]  # fmt: skip
CONFIGS = {
    "gpt2": dict(n_embd=32, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
    "qwen2": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64),
}  # fmt: skip


def tokenizer():
    return Tokenizer.build_vocab([m["content"] for c in CHATS for m in c] + ["系统：用户：助手："], min_frequency=1)


@pytest.mark.parametrize("backbone", sorted(CONFIGS))
@pytest.mark.parametrize("train_on_prompt", [False, True])
def test_a_packed_batch_has_the_unpacked_loss_and_gradients(backbone, train_on_prompt):
    if backbone == "qwen2":
        pytest.importorskip("s2s_llama", reason="needs s2s-models-llama")
    tok = tokenizer()
    torch.manual_seed(0)
    packed = load_model(tok, backbone, "sft", config=CONFIGS[backbone], pack=True, train_on_prompt=train_on_prompt)
    plain = load_model(tok, backbone, "sft", config=CONFIGS[backbone], train_on_prompt=train_on_prompt)
    plain.load_state_dict(packed.state_dict())
    rows = packed.build_dataset(CHATS)
    assert 1 < len(rows) < len(CHATS)  # several chats share a row
    assert all(len(row["input_ids"]) <= 64 for row in rows)
    batch = packed.collate(rows)
    assert batch["attention_mask"].shape == (len(rows), batch["input_ids"].shape[1], batch["input_ids"].shape[1])
    first = rows[0]
    starts = [i for i, p in enumerate(first["position_ids"]) if p == 0]
    assert len(starts) > 1 and starts[0] == 0  # positions restart per chat
    losses = {}
    for name, model in (("packed", packed), ("plain", plain)):
        model.eval()
        model.zero_grad()
        features = model.build_dataset(CHATS)
        loss = model(**model.collate(features))["loss"]
        loss.backward()
        losses[name] = loss.item(), [p.grad.clone() for p in model.parameters()]
    assert abs(losses["packed"][0] - losses["plain"][0]) <= 1e-5
    for got, want in zip(losses["packed"][1], losses["plain"][1]):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_packing_is_refused_on_an_encoder_decoder():
    pytest.importorskip("s2s_t5", reason="needs s2s-models-t5")
    with pytest.raises(ValueError, match="pack=True packs the rows of a decoder"):
        load_model(tokenizer(), "t5", "sft", size="tiny", pack=True)


@pytest.mark.parametrize("backbone", ["t5", "bart"])
def test_train_on_prompt_is_refused_on_an_encoder_decoder_naming_it(backbone):
    pytest.importorskip(f"s2s_{backbone}", reason=f"needs s2s-models-{backbone}")
    with pytest.raises(ValueError, match=rf"train_on_prompt=True .* {backbone} is an encoder-decoder, whose prompt is "
                                         r"the encoder's input"):
        load_model(tokenizer(), backbone, "sft", size="tiny", train_on_prompt=True)


def test_an_encoder_decoder_has_no_pair_for_an_answer_of_weight_0():
    pytest.importorskip("s2s_bart", reason="needs s2s-models-bart")
    tok = tokenizer()
    model = load_model(tok, "bart", "sft", size="tiny")
    weighted = [*CHATS[1][:2], {**CHATS[1][2], "weight": 0}, *CHATS[1][3:]]
    [feature] = model.build_dataset([weighted])  # the second answer only, after the whole chat before it
    assert feature["input_ids"] == tok.apply_chat_template(weighted[:4], add_generation_prompt=True)
    answer = [tok.token_to_id(t) for t in tok.tokenize("五")]
    assert feature["labels"] == [*answer, model.variant.eos_id]


def test_an_encoder_decoder_reads_one_pair_per_answer():
    pytest.importorskip("s2s_bart", reason="needs s2s-models-bart")
    tok = tokenizer()
    model = load_model(tok, "bart", "sft", size="tiny")
    features = model.build_dataset([CHATS[1]])
    assert len(features) == 2  # two answers
    for feature, index in zip(features, (3, 5)):
        prompt = tok.apply_chat_template(CHATS[1][: index - 1], add_generation_prompt=True)
        assert feature["input_ids"] == prompt
        answer = [tok.token_to_id(t) for t in tok.tokenize(CHATS[1][index - 1]["content"])]
        assert feature["labels"] == [*answer, model.variant.eos_id]
        assert feature["decoder_input_ids"] == [model.variant.start_id, *answer]
