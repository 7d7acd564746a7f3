"""``keep_tokens`` and added special tokens through ``load_model``, with a checkpoint that
transformers wrote: the model's embedding rows are the checkpoint's rows, picked or kept."""

from __future__ import annotations

import pytest
import torch

from s2s import Tokenizer, load_model
from s2s.checkpoint import CheckpointError
from s2s.config import ConfigError

transformers = pytest.importorskip("transformers")

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = 60  # the checkpoint's vocabulary
KEEP = [0, 1, 2, 3, 4, 41, 7, 59, 13, 30]  # the specials, then characters in a new order


def vocab(size: int) -> Tokenizer:
    return Tokenizer({t: i for i, t in enumerate(SPECIAL + [f"字{i}" for i in range(size - len(SPECIAL))])})


@pytest.fixture(scope="module")
def roberta_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32,
    )
    hf = transformers.BertForMaskedLM(config).eval()
    with torch.no_grad():
        hf.cls.predictions.bias.normal_()
    folder = tmp_path_factory.mktemp("roberta")
    hf.save_pretrained(folder)
    return hf, folder


@pytest.fixture(scope="module")
def gpt2_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=1, n_head=2)
    hf = transformers.GPT2LMHeadModel(config).eval()
    folder = tmp_path_factory.mktemp("gpt2")
    hf.save_pretrained(folder)
    return hf, folder


def test_roberta_classification_keeps_the_rows_of_keep_tokens(roberta_checkpoint):
    hf, folder = roberta_checkpoint
    model = load_model(vocab(len(KEEP)), "roberta", "classification", checkpoint=folder,
                       keep_tokens=KEEP, labels=["a", "b"])
    assert model.backbone.vocab_size == len(KEEP)
    rows = hf.bert.embeddings.word_embeddings.weight[KEEP]
    assert torch.equal(model.backbone.input_embeddings().weight, rows)
    assert torch.equal(model.backbone.cls["predictions"].bias, hf.cls.predictions.bias[KEEP])


def test_gpt2_causal_lm_keeps_the_rows_of_keep_tokens(gpt2_checkpoint):
    hf, folder = gpt2_checkpoint
    model = load_model(vocab(len(KEEP)), "gpt2", "causal_lm", checkpoint=folder, keep_tokens=KEEP).eval()
    assert torch.equal(model.backbone.input_embeddings().weight, hf.transformer.wte.weight[KEEP])
    # the trimmed model's logits are the full model's logits at the kept ids
    ids = torch.tensor([[2, 5, 6, 7, 9]])
    with torch.no_grad():
        got = model.backbone.lm_logits(model.backbone(ids).last_hidden_state)
        want = hf(input_ids=torch.tensor([KEEP])[:, ids[0]]).logits[..., KEEP]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("name", "task"), [("roberta", "classification"), ("gpt2", "causal_lm")])
def test_added_special_tokens_grow_the_checkpoint(request, name, task):
    hf, folder = request.getfixturevalue(f"{name}_checkpoint")
    tokenizer = vocab(VOCAB)
    tokenizer.add_special_tokens(["[E1]", "[/E1]"])
    options = {"labels": ["a", "b"]} if task == "classification" else {}
    model = load_model(tokenizer, name, task, checkpoint=folder, **options)
    weight = model.backbone.input_embeddings().weight
    assert weight.shape[0] == VOCAB + 2 == model.backbone.config.vocab_size
    assert torch.equal(weight[:VOCAB], hf.get_input_embeddings().weight)  # old rows kept
    new = weight[VOCAB:]
    assert new.abs().min() > 0 and new.std() < 0.1  # fresh rows, initialised like a new model's
    if name == "roberta":  # the MLM head's bias follows the embeddings
        bias = model.backbone.cls["predictions"].bias
        assert bias.shape[0] == VOCAB + 2 and torch.equal(bias[:VOCAB], hf.cls.predictions.bias)


def test_a_bad_keep_tokens_id_names_the_id_and_the_vocab_size(roberta_checkpoint, gpt2_checkpoint):
    for name, (_, folder) in (("roberta", roberta_checkpoint), ("gpt2", gpt2_checkpoint)):
        with pytest.raises(CheckpointError, match=r"keep_tokens\[2\] = 60 is out of range: .* has 60 tokens \(ids 0..59\)"):
            load_model(vocab(3), name, checkpoint=folder, keep_tokens=[0, 1, 60])
        with pytest.raises(CheckpointError, match=r"keep_tokens\[1\] = '字' is not a token id.* of 60 tokens"):
            load_model(vocab(3), name, checkpoint=folder, keep_tokens=[0, "字", 2])
        with pytest.raises(CheckpointError, match=r"keep_tokens\[0\] = -1 is out of range"):
            load_model(vocab(3), name, checkpoint=folder, keep_tokens=[-1, 1, 2])
    # a checkpoint file without a config.json: the range is checked against its rows
    hf, folder = gpt2_checkpoint
    with pytest.raises(CheckpointError, match=r"keep_tokens\[1\] = 99 is out of range: .* has 60 tokens"):
        load_model(None, "gpt2", config={"n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 32},
                   checkpoint=_without_config(folder), keep_tokens=[3, 99])


def _without_config(folder):
    lone = folder.parent / f"{folder.name}-weights-only"
    lone.mkdir(exist_ok=True)
    (lone / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    return lone / "model.safetensors"


def test_a_vocab_that_is_not_the_checkpoints_plus_added_tokens_is_refused(roberta_checkpoint):
    _, folder = roberta_checkpoint
    with pytest.raises(ConfigError, match="config says vocab_size=60 but the vocab has 62 tokens"):
        load_model(vocab(VOCAB + 2), "roberta", checkpoint=folder)  # plain tokens, not added ones
    with pytest.raises(ConfigError, match="keep_tokens keeps=10 but the vocab has 12 tokens"):
        load_model(vocab(len(KEEP) + 2), "roberta", checkpoint=folder, keep_tokens=KEEP)
    with pytest.raises(ValueError, match="keep_tokens picks rows of a pretrained checkpoint"):
        load_model(vocab(len(KEEP)), "roberta", keep_tokens=KEEP)


def test_keep_tokens_with_added_tokens(gpt2_checkpoint):
    hf, folder = gpt2_checkpoint
    tokenizer = vocab(len(KEEP))
    tokenizer.add_special_tokens(["[speaker1]"])
    model = load_model(tokenizer, "gpt2", checkpoint=folder, keep_tokens=KEEP)
    weight = model.input_embeddings().weight
    assert weight.shape[0] == len(KEEP) + 1 and torch.equal(weight[: len(KEEP)], hf.transformer.wte.weight[KEEP])


def test_tokens_added_to_a_fine_tuned_folder_keep_its_head(roberta_checkpoint, tmp_path):
    _, folder = roberta_checkpoint
    model = load_model(vocab(VOCAB), "roberta", "classification", checkpoint=folder, labels=["a", "b"])
    with torch.no_grad():
        for tensor in model.head_state_dict().values():
            tensor.normal_()
    model.save_pretrained(tmp_path / "tuned")
    tokenizer = Tokenizer(tmp_path / "tuned")
    tokenizer.add_special_tokens(["[E1]"])
    again = load_model(tokenizer, checkpoint=tmp_path / "tuned")
    for key, value in model.head_state_dict().items():
        assert torch.equal(again.head_state_dict()[key], value), key
    weight = again.backbone.input_embeddings().weight
    assert weight.shape[0] == VOCAB + 1
    assert torch.equal(weight[:VOCAB], model.backbone.input_embeddings().weight)
