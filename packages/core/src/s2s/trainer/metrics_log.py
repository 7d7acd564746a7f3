"""Where metrics go: ``model_save_dir/metrics.jsonl`` (one JSON object per line) and its
plot ``metrics.png`` always; TensorBoard event files under ``model_save_dir/tensorboard/``
with ``Trainer(report_to=["tensorboard"])`` (``pip install 's2s-core[tensorboard]'``)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from ..io import atomic_write

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "metrics.png"
NOT_PLOTTED = {"step", "epoch", "lr", "samples_per_s"}
TENSORBOARD_DIR = "tensorboard"
REPORTERS = ("tensorboard",)


def check_report_to(report_to) -> tuple[str, ...]:
    names = (report_to,) if isinstance(report_to, str) else tuple(report_to or ())
    unknown = [name for name in names if name not in REPORTERS]
    if unknown:
        raise ValueError(f"Trainer(report_to={list(names)!r}): unknown {unknown}; known: {list(REPORTERS)} "
                         f"(metrics.jsonl and metrics.png are always written)")
    return names


class Reports:
    """Rank 0's metrics: training records (``loss``, ``lr``, ``samples_per_s``) and validation
    metrics, to ``metrics.jsonl`` and the loggers of ``report_to`` (tagged ``train/loss``,
    ``train/lr``, ``train/samples_per_s``, ``eval/<metric>``)."""

    def __init__(self, directory: Path | None, report_to: tuple[str, ...], resumed_step: int | None):
        self.log = MetricsLog(directory) if directory else None
        self.tensorboard = None
        if "tensorboard" in report_to:
            if directory is None:
                raise ValueError("Trainer(report_to=['tensorboard']) writes under model_save_dir; set it")
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ImportError("Trainer(report_to=['tensorboard']) needs the tensorboard package: "
                                  "pip install 's2s-core[tensorboard]'") from None
            # a resumed run writes its steps again: drop those the interrupted run wrote after it
            self.tensorboard = SummaryWriter(str(directory / TENSORBOARD_DIR), purge_step=resumed_step)
        if self.log and resumed_step is not None:
            self.log.truncate_after(resumed_step)

    def write(self, record: dict, prefix: str) -> None:
        if self.log:
            self.log.append(record)
        if self.tensorboard:
            for name, value in record.items():
                if name not in ("step", "epoch") and isinstance(value, int | float):
                    self.tensorboard.add_scalar(f"{prefix}/{name}", value, record["step"])

    def close(self) -> None:
        if self.tensorboard:
            self.tensorboard.close()
        if self.log:
            self.log.plot()


class MetricsLog:
    """Appends records such as ``{"step": 20, "epoch": 0, "loss": 1.7, "lr": 2e-5}``."""

    def __init__(self, directory: Path):
        self.path = directory / METRICS_FILE

    def append(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def records(self) -> list[dict]:
        if not self.path.is_file():
            return []
        records = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("%s:%d is not JSON (a write cut short?); skipped", self.path, number)
        return records

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after ``step``: a resumed run writes them again."""
        kept = [r for r in self.records() if r.get("step", 0) <= step]
        with atomic_write(self.path, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)

    def plot(self) -> Path | None:
        """Training loss and every eval metric over steps, one panel each, as a PNG."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            logger.info("matplotlib is not installed: no %s (pip install 's2s-core[plot]')", PLOT_FILE)
            return None
        series: dict[str, tuple[list, list]] = {}
        for record in self.records():
            for key, value in record.items():
                if key in NOT_PLOTTED or not isinstance(value, int | float) or not math.isfinite(value):
                    continue
                steps, values = series.setdefault(key, ([], []))
                steps.append(record.get("step", 0))
                values.append(value)
        if not series:
            return None
        figure = Figure(figsize=(6, 2.6 * len(series)), layout="constrained")
        FigureCanvasAgg(figure)
        for index, (name, (steps, values)) in enumerate(series.items(), 1):
            axes = figure.add_subplot(len(series), 1, index)
            axes.plot(steps, values, marker="." if len(steps) < 50 else None)
            axes.set_ylabel(name)
            axes.set_xlabel("step")
            axes.grid(alpha=0.3)
        path = self.path.with_name(PLOT_FILE)
        figure.savefig(path, dpi=100)
        return path


__all__ = ["METRICS_FILE", "PLOT_FILE", "REPORTERS", "MetricsLog", "Reports", "check_report_to"]
