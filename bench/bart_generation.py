"""BART (fnlp/bart-base-chinese shape) against transformers, same process, same random weights.

1. Real sources: the first 20 CSL abstracts (``../shared/data/csl_title``, the BERT vocab of
   ``../shared/data/vocab``), greedy and beam 4, one by one and as a padded batch: s2s
   ``generate`` must give transformers' ``generate`` tokens exactly (start, eos and forced eos
   ``[SEP]``, no n-gram ban). On a 2 + 2-layer, 256-wide model with a wide init (confident,
   varied outputs), to keep the 80 runs short.
2. Speed of ``generate``: batch 1 and 8, greedy and beam 4, 32 new tokens (the end token is
   ``[unused1]``, which a random model never picks, so every run makes 32); tokens/s and ratio.
3. A training step (forward, backward, AdamW) of the seq2seq task at real CSL lengths, batch 8,
   against ``BartForConditionalGeneration(labels=...)``.

Random weights (no download); timings are best-of-N, the two sides interleaved.

    python bench/bart_generation.py [--repeats 3] [--threads N] [--only identical|generate|train]
"""

from __future__ import annotations

import argparse
import time

import torch
from shared_data import SHARED_DATA

PAD, CLS, SEP = 0, 101, 102
UNUSED = 1  # [unused1]: the end token of the speed runs
NEW_TOKENS, SOURCE_LEN = 32, 256
BASE = dict(
    vocab_size=21128, max_position_embeddings=512, d_model=768, encoder_layers=6, decoder_layers=6,
    encoder_attention_heads=12, decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
    pad_token_id=PAD, bos_token_id=CLS, eos_token_id=SEP, decoder_start_token_id=SEP, forced_eos_token_id=SEP,
)


def csl_pairs(count: int) -> list[tuple[str, str]]:
    pairs = []
    with open(SHARED_DATA / "csl_title" / "train.tsv", encoding="utf-8") as handle:
        for line in handle:
            columns = line.rstrip("\n").split("\t")
            pairs.append((columns[-2], columns[-1]))
            if len(pairs) == count:
                break
    return pairs


SMALL = dict(BASE, d_model=256, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024, init_std=0.1)


def models(shape=BASE):
    import transformers

    from s2s.checkpoint import load_into
    from s2s_bart import BartBackbone, BartConfig

    torch.manual_seed(0)
    peer = transformers.BartForConditionalGeneration(
        transformers.BartConfig(**shape, no_repeat_ngram_size=0, num_beams=1)
    ).eval()
    ours = BartBackbone(BartConfig(**shape)).eval()
    load_into(ours, ours.checkpoint_state_dict(peer.state_dict(), "peer"), source="peer")
    return peer, ours


def pad_right(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), max(map(len, rows))), PAD)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def peer_generate(peer, ids, mask, beams, eos=SEP):
    with torch.no_grad():
        out = peer.generate(
            input_ids=ids, attention_mask=mask, do_sample=False, num_beams=beams, max_new_tokens=NEW_TOKENS,
            decoder_start_token_id=SEP, eos_token_id=eos, forced_eos_token_id=eos, pad_token_id=PAD,
            no_repeat_ngram_size=0, length_penalty=1.0, early_stopping=False, min_length=0,
        )
    return [row[: row.index(eos)] if eos in row else row for row in out[:, 1:].tolist()]


def our_generate(ours, ids, mask, beams, eos=SEP):
    from s2s.generation import decoder_for, generate

    return generate(decoder_for(ours, NEW_TOKENS, forced_eos_token_id=eos), {"input_ids": ids, "attention_mask": mask},
                    num_beams=beams, max_new_tokens=NEW_TOKENS, eos_token_id=eos)


def interleaved_best(first, second, repeats: int):
    """Best times of two functions run alternately (the load of a shared machine hits both)."""
    best, results = [float("inf")] * 2, [None, None]
    for _ in range(repeats):
        for i, fn in enumerate((first, second)):
            start = time.perf_counter()
            results[i] = fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best[0], results[0], best[1], results[1]


def check_identical(sources: list[list[int]]) -> None:
    peer, ours = models(SMALL)
    for beams in (1, 4):
        ids, mask = pad_right(sources)
        batch = our_generate(ours, ids, mask, beams)
        assert batch == peer_generate(peer, ids, mask, beams), f"padded batch differs (beams {beams})"
        for row, expected in zip(sources, batch):
            one = torch.tensor([row])
            assert [expected] == our_generate(ours, one, torch.ones_like(one), beams) == peer_generate(peer, one, torch.ones_like(one), beams)
        print(
            f"20 CSL sources, {'greedy' if beams == 1 else 'beam 4'}: identical to transformers, one by one and as a "
            f"padded batch (lengths {[len(r) for r in batch]}, {len({t for r in batch for t in r})} distinct tokens)", flush=True,
        )


def bench_generate(peer, ours, sources: list[list[int]], repeats: int) -> None:
    for batch in (1, 8):
        ids, mask = pad_right(sources[:batch])
        for beams in (1, 4):
            our_generate(ours, ids, mask, beams, UNUSED)  # warm up
            t_peer, peer_out, t_ours, our_out = interleaved_best(
                lambda ids=ids, mask=mask, beams=beams: peer_generate(peer, ids, mask, beams, UNUSED),
                lambda ids=ids, mask=mask, beams=beams: our_generate(ours, ids, mask, beams, UNUSED), repeats,
            )
            assert our_out == peer_out, f"outputs differ for batch {batch} beams {beams}"
            tokens = sum(len(r) + 1 for r in our_out)  # + the forced end token
            print(
                f"bart-base batch {batch} {'greedy' if beams == 1 else 'beam 4'}: s2s {tokens / t_ours:7.1f} tok/s  "
                f"transformers {tokens / t_peer:7.1f} tok/s  ratio {t_peer / t_ours:.2f}x  "
                f"(identical outputs, {tokens} tokens)", flush=True,
            )


def bench_train(peer, ours, tokenizer, pairs, repeats: int) -> None:
    from s2s import load_model

    task = load_model(tokenizer, "bart", "seq2seq", config=BASE, max_length=512)
    task.backbone.load_state_dict(ours.state_dict())
    task.train()
    peer.train()
    batch = task.collate(task.build_dataset(pairs))
    labels = batch["labels"].masked_fill(batch["labels"] == PAD, -100)
    peer_inputs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=batch["decoder_input_ids"], labels=labels)
    ours_opt = torch.optim.AdamW(task.parameters(), lr=1e-5)
    peer_opt = torch.optim.AdamW(peer.parameters(), lr=1e-5)

    def our_step():
        loss = task(**batch)["loss"]
        loss.backward()
        ours_opt.step()
        ours_opt.zero_grad()

    def peer_step():
        loss = peer(**peer_inputs).loss
        loss.backward()
        peer_opt.step()
        peer_opt.zero_grad()

    our_step(), peer_step()  # warm up
    t_peer, _, t_ours, _ = interleaved_best(peer_step, our_step, repeats)
    shape = tuple(batch["input_ids"].shape), tuple(batch["decoder_input_ids"].shape)
    print(
        f"bart-base training step, batch {len(pairs)}, source x target {shape}: s2s {t_ours * 1000:.0f} ms  "
        f"transformers {t_peer * 1000:.0f} ms  ratio {t_peer / t_ours:.2f}x", flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--only", choices=("identical", "generate", "train"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    from s2s.tokenizer import Tokenizer

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads")
    tokenizer = Tokenizer(SHARED_DATA / "vocab" / "chinese_bert_vocab.txt")
    pairs = csl_pairs(20)
    sources = [tokenizer.encode(src, max_length=SOURCE_LEN).ids for src, _ in pairs]
    if args.only in (None, "identical"):
        check_identical(sources)
    peer, ours = models()
    if args.only in (None, "generate"):
        bench_generate(peer, ours, sources, args.repeats)
    if args.only in (None, "train"):
        bench_train(peer, ours, tokenizer, pairs[:8], args.repeats)


if __name__ == "__main__":
    main()
