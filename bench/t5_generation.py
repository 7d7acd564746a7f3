"""T5-PEGASUS shapes (mT5 v1.1 recipe, vocab 50,000) against transformers, same process, same
random weights.

1. Real sources: the first 20 CSL abstracts (``../shared/data/csl_title``), tokenized word-first
   (``segmenter="jieba"``; vocab: the Chinese BERT vocab plus the 5,000 most frequent
   multi-character jieba words of the CSL texts), greedy and beam 4 (length penalty 1.2,
   no-repeat 3-grams), one by one and as a padded batch: s2s ``generate`` must give
   ``MT5ForConditionalGeneration.generate``'s tokens exactly (start ``[CLS]``, eos ``[SEP]``).
   On a 2 + 2-layer, 256-wide model of the same recipe and vocab, to keep the 84 runs short.
2. Speed of ``generate``, small and base shapes, batch 1 and 8, greedy and beam 4, 32 new
   tokens; tokens/s and ratio (identical tokens asserted).
3. A training step (forward, loss, backward, AdamW) at real CSL lengths, padded batch of 8:
   the backbone with the loss on the target tokens vs ``MT5ForConditionalGeneration(labels=...)``.

Random weights (no download); timings are best-of-N, the two sides interleaved.

    python bench/t5_generation.py [--repeats 3] [--threads N] [--only check|generate|train] [--sizes small base]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch
import torch.nn.functional as F
from shared_data import SHARED_DATA

PAD, CLS, SEP = 0, 101, 102  # the Chinese BERT vocab's ids, kept by the word-level vocab
NEW_TOKENS, SOURCE_LEN, VOCAB = 32, 256, 50000
SHAPES = {
    "small": dict(d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_heads=6),  # 512 != 6 x 64
    "base": dict(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12),
}
CHECK_SHAPE = dict(d_model=256, d_kv=64, d_ff=512, num_layers=2, num_heads=4)


def csl_pairs(count: int | None = None) -> list[tuple[str, str]]:
    pairs = []
    with open(SHARED_DATA / "csl_title" / "train.tsv", encoding="utf-8") as handle:
        for line in handle:
            columns = line.rstrip("\n").split("\t")
            pairs.append((columns[-2], columns[-1]))
    return pairs[:count]


def word_tokenizer(texts):
    import jieba

    from s2s.tokenizer import Tokenizer

    bert = (SHARED_DATA / "vocab" / "chinese_bert_vocab.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")
    known = set(bert)
    counts = Counter(w for text in texts for w in jieba.cut(text.lower(), HMM=False) if len(w) > 1 and w not in known)
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:5000]
    return Tokenizer({t: i for i, t in enumerate(bert + words)}, segmenter="jieba")


def models(shape: dict):
    import transformers

    from s2s_t5 import MT5Config
    from s2s_t5.modeling import MT5Backbone

    values = dict(shape, vocab_size=VOCAB, dropout_rate=0.1, pad_token_id=PAD,
                  decoder_start_token_id=CLS, eos_token_id=SEP, tie_word_embeddings=False)
    torch.manual_seed(0)
    peer = transformers.MT5ForConditionalGeneration(transformers.MT5Config(**values)).eval()
    peer.lm_head.weight = torch.nn.Parameter(torch.randn_like(peer.shared.weight))  # untied, as released
    ours = MT5Backbone(MT5Config(**values)).eval()
    state = {k: v for k, v in peer.state_dict().items() if "embed_tokens" not in k}
    ours.load_state_dict(state)  # the state dict hooks map transformers' decoder. names
    return peer, ours


def pad_right(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), max(map(len, rows))), PAD)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def peer_generate(peer, ids, mask, **options):
    with torch.no_grad():
        out = peer.generate(
            input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=NEW_TOKENS,
            decoder_start_token_id=CLS, eos_token_id=SEP, pad_token_id=PAD, **options,
        )
    return [row[: row.index(SEP)] if SEP in row else row for row in out[:, 1:].tolist()]


def our_generate(ours, ids, mask, **options):
    from s2s.generation import decoder_for, generate

    start = torch.full((len(ids), 1), CLS)  # transformers' n-gram ban and penalty see the start token
    return generate(decoder_for(ours, NEW_TOKENS), {"input_ids": ids, "attention_mask": mask}, prompt_ids=start,
                    max_new_tokens=NEW_TOKENS, eos_token_id=SEP, **options)


def interleaved_best(first, second, repeats: int):
    """Best times of two functions run alternately (the load of a shared machine hits both)."""
    best, results = [float("inf")] * 2, [None, None]
    for _ in range(repeats):
        for i, fn in enumerate((first, second)):
            start = time.perf_counter()
            results[i] = fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best[0], results[0], best[1], results[1]


def check_real_sources(sources) -> None:
    peer, ours = models(CHECK_SHAPE)
    for options in (dict(num_beams=1), dict(num_beams=4, length_penalty=1.2, no_repeat_ngram_size=3)):
        ids, mask = pad_right(sources)
        batch = our_generate(ours, ids, mask, **options)
        assert batch == peer_generate(peer, ids, mask, **options), f"padded batch differs ({options})"
        for i, row in enumerate(sources):
            one = torch.tensor([row])
            got = our_generate(ours, one, torch.ones_like(one), **options)
            assert got == peer_generate(peer, one, torch.ones_like(one), **options), f"source {i} ({options})"
        print(
            f"20 CSL sources, {options}: identical to transformers, one by one and as a padded batch "
            f"(lengths {[len(r) for r in batch]}, {len({t for r in batch for t in r})} distinct tokens)", flush=True,
        )


def bench_generate(size, peer, ours, sources, repeats: int) -> None:
    for batch in (1, 8):
        ids, mask = pad_right(sources[:batch])
        for beams in (1, 4):
            our_generate(ours, ids, mask, num_beams=beams), peer_generate(peer, ids, mask, num_beams=beams)  # warm up
            t_peer, peer_out, t_ours, our_out = interleaved_best(
                lambda ids=ids, mask=mask, beams=beams: peer_generate(peer, ids, mask, num_beams=beams),
                lambda ids=ids, mask=mask, beams=beams: our_generate(ours, ids, mask, num_beams=beams), repeats,
            )
            assert our_out == peer_out, f"outputs differ for {size} batch {batch} beams {beams}"
            tokens = sum(len(r) for r in our_out)
            print(
                f"t5-pegasus-{size:5s} batch {batch} {'greedy' if beams == 1 else 'beam 4'}: s2s {tokens / t_ours:7.1f} tok/s  "
                f"transformers {tokens / t_peer:7.1f} tok/s  ratio {t_peer / t_ours:.2f}x  "
                f"(identical outputs, {tokens} tokens)", flush=True,
            )


def bench_train(size, peer, ours, tokenizer, pairs, repeats: int) -> None:
    ours.train(), peer.train()
    sources = [tokenizer.encode(src, max_length=SOURCE_LEN).ids for src, _ in pairs]
    targets = [tokenizer.encode(tgt).ids for _, tgt in pairs]  # [CLS] title [SEP]
    ids, mask = pad_right(sources)
    decoder_ids, decoder_mask = pad_right([t[:-1] for t in targets])
    labels, _ = pad_right([t[1:] for t in targets])
    scored = decoder_mask.bool()
    peer_labels = labels.masked_fill(~scored, -100)
    ours_opt = torch.optim.AdamW(ours.parameters(), lr=1e-5)
    peer_opt = torch.optim.AdamW(peer.parameters(), lr=1e-5)

    def our_step():
        hidden = ours(ids, mask, decoder_input_ids=decoder_ids).last_hidden_state
        loss = F.cross_entropy(ours.lm_logits(hidden[scored]), labels[scored])  # target tokens only
        loss.backward()
        ours_opt.step()
        ours_opt.zero_grad()

    def peer_step():
        loss = peer(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids, labels=peer_labels).loss
        loss.backward()
        peer_opt.step()
        peer_opt.zero_grad()

    our_step(), peer_step()  # warm up
    t_peer, _, t_ours, _ = interleaved_best(peer_step, our_step, repeats)
    print(
        f"t5-pegasus-{size} training step, batch {len(pairs)}, source {tuple(ids.shape)} target "
        f"{tuple(decoder_ids.shape)}: s2s {t_ours * 1000:.0f} ms  transformers {t_peer * 1000:.0f} ms  "
        f"ratio {t_peer / t_ours:.2f}x", flush=True,
    )
    ours.eval(), peer.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--only", choices=("check", "generate", "train"))
    parser.add_argument("--sizes", nargs="+", choices=tuple(SHAPES), default=list(SHAPES))
    args = parser.parse_args()
    if not (SHARED_DATA / "csl_title" / "train.tsv").is_file():
        print(f"skipped: {SHARED_DATA / 'csl_title' / 'train.tsv'} not found (set S2S_SHARED_DATA)")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads")
    pairs = csl_pairs()
    tokenizer = word_tokenizer([text for pair in pairs for text in pair])
    sources = [tokenizer.encode(src, max_length=SOURCE_LEN).ids for src, _ in pairs[:20]]
    if args.only in (None, "check"):
        check_real_sources(sources)
    for size in args.sizes if args.only != "check" else ():
        peer, ours = models(SHAPES[size])
        if args.only in (None, "generate"):
            bench_generate(size, peer, ours, sources, args.repeats)
        if args.only in (None, "train"):
            bench_train(size, peer, ours, tokenizer, pairs[:8], args.repeats)


if __name__ == "__main__":
    main()
