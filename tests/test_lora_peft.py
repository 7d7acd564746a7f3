"""LoRA against PEFT on the same weights: an adapter folder s2s writes loads into
``PeftModel.from_pretrained(AutoModelFor…)`` with the same logits, one PEFT writes loads into
s2s with the same logits, and the merged folder loads into transformers with them too.
A BERT classifier (its head in ``modules_to_save``), a GPT-2 LM (``c_attn``, an ``[in, out]``
weight), a T5 seq2seq model (``q``/``v`` in encoder, decoder and cross-attention), Qwen2 and Llama
LMs (``q_proj``/``v_proj``, and every linear map of the blocks as PEFT's ``all-linear``)."""

from __future__ import annotations

import json

import pytest
import torch

from s2s import Tokenizer, load_model
from s2s.checkpoint import CheckpointError
from s2s.config import ConfigError

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
pytest.importorskip("s2s_gpt2")
pytest.importorskip("s2s_t5")
pytest.importorskip("s2s_llama")
TASK_TYPES = {"bert": "SEQ_CLS", "gpt2": "CAUSAL_LM", "t5": "SEQ_2_SEQ_LM", "qwen2": "CAUSAL_LM", "llama": "CAUSAL_LM"}

TEXT = "国足晋级世界杯股市今天大涨房价下跌了央行降息篮球联赛开幕"
CASES = {
    "bert": ("bert", "classification", {"labels": ["a", "b", "c"]}, ["query", "value"], "AutoModelForSequenceClassification"),
    "gpt2": ("gpt2", "causal_lm", {}, ["c_attn"], "AutoModelForCausalLM"),
    "t5": ("t5", "seq2seq", {}, ["q", "v"], "AutoModelForSeq2SeqLM"),
    "qwen2": ("qwen2", "causal_lm", {}, ["q_proj", "v_proj"], "AutoModelForCausalLM"),
    # every linear map of the blocks: what PEFT's "all-linear" picks on a Llama
    "llama": ("llama", "causal_lm", {}, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
              "AutoModelForCausalLM"),
}


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab([TEXT], min_frequency=1)


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tokenizer, tmp_path_factory):
    """(name, base folder) of a tiny random model saved by s2s."""
    name = request.param
    model_name, task, options, _, _ = CASES[name]
    torch.manual_seed(0)
    base = tmp_path_factory.mktemp(name) / "base"
    load_model(tokenizer, model_name, task, size="tiny", **options).save_pretrained(base)
    return name, base


def inputs_mask():
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    return mask


def inputs(tokenizer, name):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, len(tokenizer), (2, 9), generator=generator)
    batch = {"input_ids": ids, "attention_mask": inputs_mask()}
    if name == "t5":
        batch["decoder_input_ids"] = torch.randint(5, len(tokenizer), (2, 5), generator=generator)
    return batch


def s2s_logits(model, batch):
    """The classifier's logits, or the LM logits at every position (the tasks' own forward
    returns those of scored tokens only)."""
    with torch.no_grad():
        if "labels" in model.recipe.options:
            return model.eval()(**batch)["logits"]
        return model.backbone.lm_logits(model.eval().backbone(**batch).last_hidden_state)


def hf_logits(model, batch):
    with torch.no_grad():
        return model.eval()(**batch).logits


def assert_close(ours, theirs, name):
    if ours.dim() == 3 and ours.shape[1] == 9:  # a decoder's logits: those of real tokens
        real = inputs_mask().bool()
        ours, theirs = ours[real], theirs[real]
    error = (ours - theirs).abs().max() / theirs.abs().max()
    assert error <= 1e-5, f"{name}: relative error {error:.2e}"


def randomize(parameters, std=0.2):
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in parameters:
            p.copy_(torch.randn(p.shape, generator=generator) * std)


def test_s2s_adapter_loads_into_peft_and_back(case, tokenizer, tmp_path):
    name, base = case
    _, _, _, targets, auto = CASES[name]
    model = load_model(checkpoint=base, lora=dict(r=4, alpha=8, targets=targets, dropout=0.1))
    randomize([a.B for a in model.lora_adapters.values()])  # B starts at 0: give it values
    randomize([p for k, p in model.named_parameters() if not k.startswith(("backbone.", "lora_adapters."))])
    model.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["target_modules"] == sorted(targets)
    assert config["base_model_name_or_path"] == str(base)
    assert config["task_type"] == TASK_TYPES[name]
    assert config["fan_in_fan_out"] is (name == "gpt2")
    assert config["modules_to_save"] == (["classifier"] if name == "bert" else None)
    batch = inputs(tokenizer, name)
    ours = s2s_logits(model, batch)
    hf = getattr(transformers, auto).from_pretrained(base)
    plain = hf_logits(hf, batch)
    theirs = hf_logits(peft.PeftModel.from_pretrained(hf, tmp_path / "adapter"), batch)
    assert (theirs - plain).abs().max() > 1e-3  # the adapter changes the logits
    assert_close(ours, theirs, name)
    again = load_model(checkpoint=tmp_path / "adapter")
    assert torch.equal(s2s_logits(again, batch), ours)

    merged = again.merge_lora()
    assert not any(n.startswith("lora_adapters") for n, _ in merged.named_parameters())
    merged.save_pretrained(tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    assert_close(hf_logits(getattr(transformers, auto).from_pretrained(tmp_path / "merged"), batch), theirs, name)


def test_peft_adapter_loads_into_s2s(case, tokenizer, tmp_path):
    name, base = case
    _, _, _, targets, auto = CASES[name]
    hf = getattr(transformers, auto).from_pretrained(base)
    config = peft.LoraConfig(task_type=TASK_TYPES[name], r=4, lora_alpha=16, target_modules=targets, use_rslora=True)
    made = peft.get_peft_model(hf, config)
    randomize([p for n, p in made.named_parameters() if "lora_B" in n or "modules_to_save" in n])
    made.save_pretrained(tmp_path / "peft")
    batch = inputs(tokenizer, name)
    theirs = hf_logits(made, batch)
    ours = load_model(checkpoint=tmp_path / "peft")  # the base named in adapter_config.json
    assert ours.lora_config.use_rslora and ours.lora_config.scale == 8.0
    assert_close(s2s_logits(ours, batch), theirs, name)


def test_bad_adapters_are_named(tokenizer, tmp_path):
    torch.manual_seed(0)
    bert = tmp_path / "bert"
    load_model(tokenizer, "bert", "classification", size="tiny", labels=["a", "b"]).save_pretrained(bert)
    gpt2 = tmp_path / "gpt2"
    load_model(tokenizer, "gpt2", "causal_lm", size="tiny").save_pretrained(gpt2)
    load_model(checkpoint=bert, lora=dict(r=4, alpha=8)).save_pretrained(tmp_path / "adapter")
    # a base of another architecture: named, nothing loaded
    with pytest.raises(ConfigError, match="'bert' backbone.*'gpt2' model"):
        load_model(checkpoint=tmp_path / "adapter", base=gpt2)
    with pytest.raises(ConfigError, match="is not found"):
        load_model(checkpoint=tmp_path / "adapter", base=tmp_path / "nowhere")
    # shapes that do not fit: per key
    config_file = tmp_path / "adapter" / "adapter_config.json"
    values = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**values, "r": 8}))
    with pytest.raises(CheckpointError, match=r"query\.lora_A\.weight has shape \(4, 64\), the base needs \(8, 64\)"):
        load_model(checkpoint=tmp_path / "adapter")
    config_file.write_text(json.dumps({**values, "peft_type": "IA3"}))
    with pytest.raises(ConfigError, match="peft_type 'IA3' is not supported"):
        load_model(checkpoint=tmp_path / "adapter")
    # a GPT-2 adapter on a BERT base: its modules are named
    load_model(checkpoint=gpt2, lora=dict(r=4, alpha=8)).save_pretrained(tmp_path / "gpt2-adapter")
    (tmp_path / "gpt2-adapter" / "s2s_task.json").unlink()
    with pytest.raises(CheckpointError, match="does not have.*transformer.h.0.attn.c_attn"):
        load_model(checkpoint=tmp_path / "gpt2-adapter", base=bert, task_name="classification", labels=["a", "b"])


def test_targets_by_name_keyword_and_default(tokenizer, tmp_path):
    torch.manual_seed(0)
    bert = tmp_path / "bert"
    load_model(tokenizer, "bert", "classification", size="tiny", labels=["a", "b"]).save_pretrained(bert)

    def adapted(**lora):
        model = load_model(checkpoint=bert, lora=lora)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == {n for n, _ in model.named_parameters() if n.startswith(("lora_adapters.", "classifier."))}
        return sorted(model.lora_hf_names.values())

    layer = "bert.encoder.layer.{}."
    assert adapted() == sorted(layer.format(i) + f"attention.self.{n}" for i in (0, 1) for n in ("query", "value"))
    assert adapted(targets="attention") == sorted(
        layer.format(i) + n for i in (0, 1)
        for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense")
    )
    every = adapted(targets="all-linear")
    assert len(every) == 2 * 6 + 1 and "bert.pooler.dense" in every
    assert adapted(targets="output.dense") == sorted(
        layer.format(i) + n for i in (0, 1) for n in ("attention.output.dense", "output.dense")
    )
    with pytest.raises(ValueError, match=r"'qq_proj' match no linear map.*encoder\.layer\.\*\.attention\.self\.query"):
        load_model(checkpoint=bert, lora=dict(targets=["query", "qq_proj"]))
    for bad in (dict(r=0), dict(alpha=-1)):
        with pytest.raises(ValueError, match="LoRA"):
            load_model(checkpoint=bert, lora=bad)
    with pytest.raises(ValueError, match="pass its checkpoint="):
        load_model(tokenizer, "bert", "classification", size="tiny", labels=["a", "b"], lora=dict(r=2))


def test_command_line_trains_lora_and_exports_the_merged_model(tokenizer, tmp_path):
    from s2s.cli import main

    torch.manual_seed(0)
    base = tmp_path / "base"
    load_model(tokenizer, "bert", "classification", size="tiny", labels=["体育", "财经"]).save_pretrained(base)
    train = tmp_path / "train.tsv"
    train.write_text("国足晋级世界杯\t体育\n股市今天大涨\t财经\n篮球联赛开幕\t体育\n央行降息\t财经\n", encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "--task", "classification", "--checkpoint", str(base), "--lora",
                 "r=4,alpha=8,targets=query+value", "--train", str(train), "--output", str(run),
                 "--epochs", "2", "--batch-size", "2", "--lr", "1e-2", "--no-progress"]) == 0
    final = run / "final"
    assert json.loads((final / "adapter_config.json").read_text())["r"] == 4
    assert main(["export", str(final), "--merge-lora", str(tmp_path / "merged")]) == 0
    trained = load_model(checkpoint=final)
    batch = inputs(tokenizer, "bert")
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert_close(hf_logits(hf, batch), s2s_logits(trained, batch), "bert")
    plain = load_model(checkpoint=base)
    assert (s2s_logits(plain, batch) - s2s_logits(trained, batch)).abs().max() > 1e-4  # it trained
