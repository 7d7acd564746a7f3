"""Text regression: one real-valued score per text (ratings, readability, sentiment strength).

The first token's final hidden state goes through a linear layer; the loss is the mean
squared error against ``labels``. ``tiny_runs`` gives the examples s2s's conformance suite
exercises the task on (``python -m s2s.testing.conformance --task text_regression``).
"""

from __future__ import annotations

import torch
from torch import nn

from s2s.task import Task, TinyRun


class TextRegression(Task):
    def __init__(self, backbone, tokenizer, max_length: int = 128):
        super().__init__(backbone, tokenizer)
        self.max_length = max_length
        self.score = nn.Linear(backbone.hidden_size, 1)

    @classmethod
    def tiny_runs(cls) -> list[TinyRun]:
        """A handful of examples for the conformance suite: train, predict, save, reload."""
        scores = {"这部电影很好看": 4.5, "剧情很无聊": 1.0, "演员演得不错": 4.0, "浪费时间": 0.5}
        train = [{"text": text, "label": score} for text, score in scores.items()]
        return [TinyRun(train, ["很好看的电影", "无聊的剧情"])]

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        hidden = self.backbone(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state  # [batch, seq, hidden]
        scores = self.score(hidden[:, 0]).squeeze(-1)  # [batch]
        output = {"logits": scores}
        if labels is not None:
            output["loss"] = nn.functional.mse_loss(scores, labels.to(scores.dtype))
        return output

    def build_dataset(self, examples, source: str = "dataset") -> list[dict]:
        """The examples as they are (``collate`` encodes them)."""
        examples = list(examples)
        if not examples:
            raise ValueError(f"{source} is empty: no examples")
        return examples

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        """``items`` are ``{"text": str, "label": float}``; pads to the longest text."""
        batch = self.tokenizer.encode_batch([item["text"] for item in items], max_length=self.max_length)
        if "label" in items[0]:
            batch["labels"] = torch.tensor([float(item["label"]) for item in items])
        return batch

    @torch.no_grad()
    def predict(self, texts: list[str]) -> list[float]:
        self.eval()
        batch = self.tokenizer.encode_batch(texts, max_length=self.max_length)
        device = next(self.parameters()).device
        return self(**{k: v.to(device) for k, v in batch.items()})["logits"].tolist()
