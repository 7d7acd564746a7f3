"""causal_lm, chat and seq2seq on decoder LLMs with a Hugging Face tokenizer (Qwen2 byte-level
BPE, Llama 3), whose vocabularies have no ``[CLS]`` / ``[SEP]`` / ``[UNK]``: the tokenizer's end
token (its eos) ends texts and stops generation, prompts keep the template's leading specials.

The reference is transformers on the folder s2s saved: ``AutoTokenizer``'s ids for prompts and
training texts (plus the eos), ``AutoModelForCausalLM.generate``'s greedy tokens (with the eos
made likely, so that some continuations stop before ``max_new_tokens``).
"""

from __future__ import annotations

import json

import pytest
import torch

from s2s import Tokenizer, load_model, seed_everything

pytest.importorskip("s2s_llama", reason="needs s2s-models-llama")
transformers = pytest.importorskip("transformers")
from s2s.testing.hf_tokenizers import byte_level_bpe_folder  # noqa: E402

TEXTS = [
    "今天天气很好，我们去公园散步。", "从前有座山，山里有座庙。", "春眠不觉晓，处处闻啼鸟。",
    "北京队在比赛中以三比一战胜上海队。", "新款手机今天正式发布，售价三千元。", "hello world, the quick brown fox.",
]  # fmt: skip
PROMPTS = ["今天", "今", "从前有座山", "hello world", "北京队在比赛中", "春眠"]
BACKBONES = {"qwen2": "qwen2", "llama3": "llama"}
NEW = 16


def head_weight(model) -> torch.Tensor:
    """The LM head's matrix (the embeddings when tied)."""
    params = dict(model.backbone.named_parameters())
    heads = [name for name in params if name.endswith("lm_head.weight")] or [
        name for name in params if name.endswith("embed_tokens.weight")
    ]
    return params[heads[0]]


def backbone_of(folder) -> str:
    return json.loads((folder / "config.json").read_text())["model_type"]


@pytest.fixture(scope="module", params=sorted(BACKBONES))
def folder(request, tmp_path_factory):
    """A random causal_lm saved by s2s on a ``style`` tokenizer folder, drawn wide (greedy
    outputs vary), with the eos row of its head a multiple of the row of a token the first prompt
    continues with, so that continuations reach the eos."""
    style = request.param
    folder = byte_level_bpe_folder(tmp_path_factory.mktemp(style), TEXTS, style, vocab_size=400)
    tokenizer = Tokenizer.from_pretrained(folder)
    seed_everything(0)
    model = load_model(tokenizer, BACKBONES[style], "causal_lm", size="tiny")
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0, 0.5)
    model.save_pretrained(folder)
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    hf = transformers.AutoTokenizer.from_pretrained(folder)
    prompt = hf(PROMPTS[0], return_tensors="pt")
    out = reference.generate(**prompt, max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0)
    chosen = out[0, prompt.input_ids.shape[1] + 2].item()
    with torch.no_grad():
        weight = head_weight(model)
        weight[tokenizer.eos_id] = 1.5 * weight[chosen]
    model.save_pretrained(folder)
    return folder


def test_end_token_and_banned_ids_of_each_vocabulary(folder, tmp_path):
    tokenizer = Tokenizer.from_pretrained(folder)
    assert tokenizer.cls_id is None and tokenizer.sep_id is None and tokenizer.unk_id is None
    hf = transformers.AutoTokenizer.from_pretrained(folder)
    assert tokenizer.end_id == hf.eos_token_id and tokenizer.banned_ids == []
    bert = Tokenizer.build_vocab(TEXTS, min_frequency=1)
    assert (bert.end_id, bert.banned_ids, bert.start_ids) == (bert.sep_id, [bert.unk_id], [bert.cls_id])


def test_prompt_and_training_ids_equal_transformers(folder):
    lm = load_model(checkpoint=folder)
    hf = transformers.AutoTokenizer.from_pretrained(folder)
    for prompt in [*PROMPTS, " 今天", "a"]:
        expected = hf(prompt).input_ids
        assert lm.encode_prompt(prompt, NEW) == (expected, False), prompt
    for text in TEXTS:
        assert lm.build_dataset([text])[0]["input_ids"] == hf(text).input_ids + [hf.eos_token_id]
    assert lm.tokenizer.text_ids("春眠" + hf.eos_token) == hf("春眠").input_ids + [hf.eos_token_id]  # once
    empty = hf("").input_ids or [hf.eos_token_id]  # Llama 3: its bos; Qwen2: none, so the eos starts
    assert lm.encode_prompt("", NEW) == (empty, False)


def test_long_prompt_keeps_the_leading_specials_and_its_end(folder):
    lm = load_model(checkpoint=folder)
    lm.max_length = 12
    ids = transformers.AutoTokenizer.from_pretrained(folder)(TEXTS[0] * 2).input_ids
    start = len(lm.tokenizer.start_ids)
    assert lm.encode_prompt(TEXTS[0] * 2, 4) == (ids[:start] + ids[len(ids) - (8 - start) :], True)


def test_greedy_predict_equals_transformers_generate_and_stops_at_eos(folder):
    lm = load_model(checkpoint=folder)
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    hf = transformers.AutoTokenizer.from_pretrained(folder)
    stopped = 0
    for prompt in PROMPTS:
        inputs = hf(prompt, return_tensors="pt")
        out = reference.generate(**inputs, max_new_tokens=NEW, do_sample=False, eos_token_id=hf.eos_token_id,
                                 pad_token_id=hf.eos_token_id)
        tokens = out[0, inputs.input_ids.shape[1] :].tolist()
        stopped += tokens[-1] == hf.eos_token_id and len(tokens) < NEW
        expected = lm.tokenizer.decode(tokens)
        assert lm.predict([prompt], max_new_tokens=NEW) == [expected], prompt
        assert "".join(lm.stream(prompt, max_new_tokens=NEW)) == expected
    assert stopped  # some continuations end at the eos before max_new_tokens
    assert lm.predict(PROMPTS, max_new_tokens=NEW) == [lm.predict([p], max_new_tokens=NEW)[0] for p in PROMPTS]


def test_chat_turns_end_with_eos(folder):
    tokenizer = Tokenizer.from_pretrained(folder)
    hf = transformers.AutoTokenizer.from_pretrained(folder)
    bot = load_model(tokenizer, backbone_of(folder), "chat", size="tiny")
    ids, types, loss = bot.encode_turns(["你好", "今天天气很好"])
    eos = hf.eos_token_id
    first, second = hf("你好", add_special_tokens=False).input_ids, hf("今天天气很好", add_special_tokens=False).input_ids
    start = hf("").input_ids  # Llama 3: its bos; Qwen2: none
    assert ids == start + first + [eos] + second + [eos] and types is None
    assert loss == [0] * (len(start) + len(first) + 1) + [1] * (len(second) + 1)
    assert all(isinstance(text, str) for text in bot.reply([["你好"]], max_new_tokens=4))


def test_seq2seq_on_a_decoder_trains_and_predicts(folder):
    tokenizer = Tokenizer.from_pretrained(folder)
    hf = transformers.AutoTokenizer.from_pretrained(folder)
    seed_everything(0)
    model = load_model(tokenizer, backbone_of(folder), "seq2seq", size="tiny")
    pairs = [("今天天气很好", "公园散步"), ("北京队战胜上海队", "北京队获胜")]
    features = model.build_dataset(pairs)
    eos = hf.eos_token_id
    for (src, tgt), feature in zip(pairs, features):
        source, target = hf(src).input_ids + [eos], hf(tgt, add_special_tokens=False).input_ids + [eos]
        assert feature["input_ids"] == source + target
        assert feature["token_type_ids"] == [0] * len(source) + [1] * len(target)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        loss = model(**model.collate(features))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    sources = [src for src, _ in pairs]
    assert model.predict(sources, max_new_tokens=8) == [tgt for _, tgt in pairs]
    assert model.predict(sources, beam_size=2, max_new_tokens=8) == [tgt for _, tgt in pairs]
    assert "".join(model.stream(sources[0], max_new_tokens=8)) == pairs[0][1]
