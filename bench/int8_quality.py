"""int8 against fp32 on trained models (issue 26): accuracy and generated tokens.

1. Classification: ``bench/finetune_e2e.py``'s recipe (its random 4 x 256 BERT checkpoint, the
   THUCNews titles, 2 epochs, seed 0), then the held-out accuracy of the model in fp32, with
   ``quantize="int8"`` (weight-only), ``quantize="int8-dynamic"`` and exported to ONNX Runtime
   int8. Target: every int8 at most 0.5 points below fp32.
2. Generation: GPT-2 and BART ``small`` trained on the CSL titles by
   ``examples/seq2seq/auto_title.py`` (``--epochs``), then greedy decoding of 64 new tokens
   on 20 CSL abstracts (the file's last 20): the share of positions where the int8 models' characters equal
   fp32's (the vocab is built from the texts, a token per character). Target: >= 90 %.

    python bench/int8_quality.py [--data ../shared/data] [--only classification|generation] [--epochs 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from shared_data import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
SCHEMES = ("int8", "int8-dynamic")


def classification(data: Path) -> None:
    from finetune_e2e import read_split, save_checkpoint, train_s2s

    from s2s import load_model
    from s2s.onnx.export import export_onnx

    labels, train, held_out = read_split(data / "thucnews_titles")
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp, "checkpoint")
        save_checkpoint(data / "vocab" / "chinese_bert_vocab.txt", checkpoint)
        seconds, model = train_s2s(checkpoint, labels, train)
        model.save_pretrained(Path(tmp, "fp32"))
        export_onnx(model, Path(tmp, "onnx-int8"), quantize="int8")
        variants = {"fp32": model, **{name: load_model(checkpoint=Path(tmp, "fp32"), quantize=name) for name in SCHEMES},
                    "onnx int8": load_model(checkpoint=Path(tmp, "onnx-int8"))}
        features = model.build_dataset(held_out)
        accuracy = {name: 100 * task.evaluate(features, batch_size=256)["accuracy"] for name, task in variants.items()}
    cells = "  ".join(f"{name} {value:.2f} % ({value - accuracy['fp32']:+.2f})" for name, value in accuracy.items())
    print(f"classification thucnews ({len(train)} trained in {seconds:.0f} s, {len(held_out)} held out): {cells}", flush=True)


def generation(data: Path, epochs: int, new_tokens: int = 64, sources: int = 20) -> None:
    from s2s import load_model

    csl = data / "csl_title" / "train.tsv"
    abstracts = [line.split("\t")[-2] for line in csl.read_text(encoding="utf-8").splitlines()[-sources:]]
    for model_name in ("gpt2", "bart"):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, str(REPO / "examples" / "seq2seq" / "auto_title.py"), "--train", str(csl),
                 "--model", model_name, "--size", "small", "--epochs", str(epochs), "--output", tmp,
                 "--no-progress", "--show", "0", "--beam-size", "1"],
                check=True, stdout=subprocess.DEVNULL,
            )
            folder = Path(tmp, "final")
            outputs = {}
            for name in ("fp32", *SCHEMES):
                task = load_model(checkpoint=folder, quantize=None if name == "fp32" else name).eval()
                outputs[name] = task.predict(abstracts, beam_size=1, max_new_tokens=new_tokens)
        cells = []
        for name in SCHEMES:
            equal = sum(a == b for x, y in zip(outputs[name], outputs["fp32"]) for a, b in zip(x, y))
            total = sum(max(len(x), len(y)) for x, y in zip(outputs[name], outputs["fp32"]))
            cells.append(f"{name} {100 * equal / max(total, 1):.1f} % of {total} positions equal fp32")
        print(f"generation {model_name}-small csl ({epochs} epochs), greedy {new_tokens} tokens on {sources} abstracts: "
              f"{'  '.join(cells)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--only", choices=("classification", "generation"))
    parser.add_argument("--epochs", type=int, default=8, help="auto_title epochs of the generation models")
    args = parser.parse_args()
    if not (args.data / "thucnews_titles").is_dir():
        raise SystemExit(f"no shared data in {args.data}: pass --data or set S2S_SHARED_DATA")
    torch.set_num_threads(1)
    print(f"load average before: {os.getloadavg()[0]:.2f}; torch {torch.__version__}", flush=True)
    if args.only in (None, "classification"):
        classification(args.data)
    if args.only in (None, "generation"):
        generation(args.data, args.epochs)
    print(f"load average after: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
