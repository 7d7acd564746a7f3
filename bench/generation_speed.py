"""Generation speed: s2s's cached decoders against their peers, same process, same weights.

1. GPT-2 (small = 6 layers, base = 12 layers, 768 wide, 21128-token BERT vocab), greedy and
   beam 4, batch 1 and 8: s2s ``generate`` with core's decoder-only decoder vs ``transformers``
   ``GPT2LMHeadModel.generate``; the token ids must be identical.
2. UniLM on a BERT-base shape, beam 3, 32 new tokens, 128-token source: the cached decoder
   vs re-running the full sequence every step (the original library's approach).

Random weights (no download). Prints tokens/s and the ratio for each case.

    python bench/generation_speed.py [--only gpt2|unilm] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

EOS = 102  # [SEP] of the Chinese BERT vocab


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def interleaved_best(first, second, repeats: int):
    """Best times of two functions run alternately (the load of a shared machine hits both)."""
    best = [float("inf"), float("inf")]
    results = [None, None]
    for _ in range(repeats):
        for i, fn in enumerate((first, second)):
            start = time.perf_counter()
            results[i] = fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best[0], results[0], best[1], results[1]


def strip_after_eos(rows, eos: int) -> list[list[int]]:
    out = []
    for row in rows:
        out.append(row[: row.index(eos)] if eos in row else row)
    return out


def bench_gpt2(repeats: int, sizes, new_tokens: int = 32, prompt_len: int = 24) -> list[str]:
    from transformers import GPT2Config as HFGPT2Config
    from transformers import GPT2LMHeadModel

    from s2s.generation import decoder_for, generate
    from s2s_gpt2 import GPT2Backbone, GPT2Config

    lines = []
    for size, layers in sizes:
        torch.manual_seed(0)
        hf_config = HFGPT2Config(vocab_size=21128, n_positions=512, n_embd=768, n_layer=layers, n_head=12)
        peer = GPT2LMHeadModel(hf_config).eval()
        ours = GPT2Backbone(GPT2Config(vocab_size=21128, n_positions=512, n_embd=768, n_layer=layers, n_head=12))
        ours.load_state_dict({k: v for k, v in peer.state_dict().items() if k != "lm_head.weight"})
        ours.eval()
        for batch in (1, 8):
            ids = torch.randint(106, 21128, (batch, prompt_len), generator=torch.Generator().manual_seed(batch))
            mask = torch.ones_like(ids)
            for row in range(1, batch):  # left padding of varied length
                mask[row, : row % 5] = 0
                ids[row, : row % 5] = 0
            for beams in (1, 4):
                def run_peer(peer=peer, ids=ids, mask=mask, beams=beams):
                    with torch.no_grad():
                        out = peer.generate(
                            input_ids=ids, attention_mask=mask, do_sample=False, num_beams=beams,
                            max_new_tokens=new_tokens, pad_token_id=0, eos_token_id=EOS,
                        )
                    return strip_after_eos(out[:, prompt_len:].tolist(), EOS)

                def run_ours(ours=ours, ids=ids, mask=mask, beams=beams):
                    return generate(
                        decoder_for(ours, new_tokens), {"input_ids": ids, "attention_mask": mask},
                        prompt_ids=ids, prompt_mask=mask, num_beams=beams, max_new_tokens=new_tokens, eos_token_id=EOS,
                    )

                run_ours(), run_peer()  # warm up
                t_peer, peer_out, t_ours, our_out = interleaved_best(run_peer, run_ours, repeats)
                assert our_out == peer_out, f"outputs differ for gpt2-{size} batch {batch} beams {beams}"
                tokens = sum(len(r) for r in our_out)
                lines.append(
                    f"gpt2-{size:5s} batch {batch} {'greedy ' if beams == 1 else 'beam 4 '}: "
                    f"s2s {tokens / t_ours:8.1f} tok/s  transformers {tokens / t_peer:8.1f} tok/s  "
                    f"ratio {t_peer / t_ours:.2f}x  (identical outputs, {tokens} tokens)"
                )
                print(lines[-1], flush=True)
    return lines


class FullRecomputeUniLM:
    """The original library's decoding: every step re-runs ``[CLS] src [SEP] tgt`` through the
    whole model with the UniLM mask (beams as the batch, histories reordered)."""

    def __init__(self, backbone):
        self.backbone = backbone

    def logits(self, ids, types):
        from s2s.nn.masks import unilm_mask

        hidden = self.backbone(ids, attention_mask=unilm_mask(types), token_type_ids=types).last_hidden_state
        return self.backbone.lm_logits(hidden[:, -1])

    def start(self, inputs):
        ids = inputs["input_ids"]
        types = torch.zeros_like(ids)
        return self.logits(ids, types), (ids, types)

    def step(self, tokens, state):
        ids, types = state
        ids = torch.cat([ids, tokens[:, None]], 1)
        types = torch.cat([types, torch.ones_like(tokens)[:, None]], 1)
        return self.logits(ids, types), (ids, types)

    def reorder(self, state, index):
        return state[0][index], state[1][index]


def bench_unilm(repeats: int, new_tokens: int = 32, source_len: int = 128, beams: int = 3) -> list[str]:
    from s2s.generation import generate
    from s2s_bert.config import BertConfig
    from s2s_bert.modeling import BertBackbone
    from s2s_tasks.seq2seq_variants import UniLMDecoder

    torch.manual_seed(0)
    model = BertBackbone(BertConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).eval()
    ids = torch.randint(106, 21128, (1, source_len), generator=torch.Generator().manual_seed(0))
    ids[0, 0], ids[0, -1] = 101, 102  # [CLS] … [SEP]
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    settings = dict(num_beams=beams, max_new_tokens=new_tokens)  # no EOS: every run makes 32 tokens

    def cached():
        return generate(UniLMDecoder(model), inputs, **settings)

    def full():
        with torch.no_grad():
            return generate(FullRecomputeUniLM(model), inputs, **settings)

    cached()
    t_cached, out_cached = best_time(cached, repeats)
    t_full, out_full = best_time(full, 1)
    same = "identical outputs" if out_cached == out_full else "outputs differ"
    line = (
        f"unilm bert-base beam {beams}, {source_len}-token source, {new_tokens} new tokens: "
        f"cached {new_tokens / t_cached:6.1f} tok/s  full recompute {new_tokens / t_full:6.1f} tok/s  "
        f"ratio {t_full / t_cached:.1f}x  ({same})"
    )
    print(line, flush=True)
    return [line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("gpt2", "unilm"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--gpt2-sizes", nargs="+", default=["small", "base"], choices=("small", "base"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.only in (None, "unilm"):
        bench_unilm(args.repeats)
    if args.only in (None, "gpt2"):
        sizes = {"small": 6, "base": 12}
        bench_gpt2(args.repeats, [(name, sizes[name]) for name in args.gpt2_sizes])


if __name__ == "__main__":
    main()
