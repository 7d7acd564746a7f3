"""Why the first SimBERT run failed: the similarity loss of a model trained from scratch, with
and without dropout.

A random encoder's ``[CLS]`` states are almost the same vector for every title (their mean
cosine is printed), so the in-batch similarity loss starts at its uniform value log(2B - 1).
With dropout, the noise it adds is larger than the differences between titles: the loss stays
there (the gradient is noise). Without dropout it falls at once. Each model trains the
similarity loss alone for ``--steps`` steps on THUCNews (title, perturbed title) pairs::

    python examples/simbert/check_collapse.py --steps 40
"""

from __future__ import annotations

import argparse
import math
import random

import torch
import torch.nn.functional as F
from train_simbert import DATA, perturb, read_titles

from s2s import load_model, resolve_tokenizer, seed_everything
from s2s.nn.masks import unilm_mask
from s2s_tasks.simbert import similarity_loss


def cls_vectors(model, batch) -> torch.Tensor:
    """Sentence vectors of each row's first sentence, as SimBert.forward computes them."""
    mask = unilm_mask(batch["token_type_ids"], batch["attention_mask"])
    hidden = model.backbone(batch["input_ids"], attention_mask=mask, token_type_ids=batch["token_type_ids"])
    return model.sentence_vectors(hidden.last_hidden_state[:, 0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="roformer")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32, help="pairs per batch (two rows each)")
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(0)
    titles = read_titles(DATA)
    pairs = [(t, perturb(t, rng)) for t in titles[: args.steps * args.batch_size]]
    tokenizer = resolve_tokenizer(None, None, titles, min_frequency=1)
    print(f"uniform loss log(2B - 1) = {math.log(2 * args.batch_size - 1):.3f}")
    for dropout in (0.1, 0.0):
        seed_everything(0)
        config = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
        model = load_model(tokenizer, args.model, "simbert", size="tiny", config=config, scale=20)
        features = model.build_dataset(pairs)
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
        losses = []
        for step in range(args.steps):
            batch = model.collate(features[step * args.batch_size : (step + 1) * args.batch_size])
            if step == 0:
                with model.inference():
                    unit = F.normalize(cls_vectors(model, batch), dim=-1)
                off_diagonal = (unit @ unit.T).masked_select(~torch.eye(len(unit), dtype=torch.bool))
                print(f"dropout {dropout}: mean cosine of [CLS] vectors at init {off_diagonal.mean():.5f}")
            loss = similarity_loss(cls_vectors(model, batch), model.scale)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        print(f"dropout {dropout}: similarity loss every 5 steps", [round(x, 3) for x in losses[::5]])


if __name__ == "__main__":
    main()
