"""Export an encoder task's backbone to ONNX, with dynamic batch and sequence axes."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from ..backbone import ENCODER
from ..checkpoint import save_weights
from ..folder import HEAD_FILE, ONNX_FILE
from ..io import atomic_write
from ..plugins import get_plugins
from ..task_folder import save_recipe
from . import INPUTS
from .runtime import ONNX_KEY, require

logger = logging.getLogger(__name__)

OPSET = 17


class ExportError(ValueError):
    """A model that cannot be exported as asked."""


class _BackboneOutputs(nn.Module):
    """The backbone as a function of :data:`INPUTS` returning a tuple of tensors (what ONNX
    graphs return): the last hidden state, the pooler output where there is one, and every
    layer's states when the task reads them. States at padding are 0, as the backbones give
    them in PyTorch (they leave padding out of the work)."""

    def __init__(self, backbone: nn.Module, hidden_states: bool):
        super().__init__()
        self.backbone, self.hidden_states = backbone, hidden_states

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.backbone(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            output_hidden_states=self.hidden_states,
        )
        real = attention_mask[..., None].to(out.last_hidden_state.dtype)  # [B, L, 1]
        tensors = [out.last_hidden_state * real]
        if out.pooler_output is not None:
            tensors.append(out.pooler_output)
        return (*tensors, *(states * real for states in (out.hidden_states if self.hidden_states else ())))


def _output_names(task) -> tuple[list[str], bool]:
    """The backbone outputs the task reads, named, and whether they include every layer's
    states: one forward of the task on a padded batch, with the backbone's call recorded."""
    seen = {}
    original = task.backbone.forward

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.update(output=out, hidden=bool(kwargs.get("output_hidden_states")))
        return out

    task.backbone.forward = recording
    try:
        with task.inference():
            task(**_example_batch(task))
    finally:
        del task.backbone.forward
    out = seen["output"]
    names = ["last_hidden_state", *(["pooler_output"] if out.pooler_output is not None else [])]
    if seen["hidden"]:
        names += [f"hidden_states.{i}" for i in range(len(out.hidden_states))]
    return names, seen["hidden"]


def _example_batch(task) -> dict[str, torch.Tensor]:
    """Two rows of 8 tokens, the second padded: tracing takes the path of padded batches,
    which serves unpadded ones too."""
    input_ids = torch.full((2, 8), 5, dtype=torch.long)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    input_ids[1, 5:] = task.tokenizer.pad_id
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": torch.zeros_like(input_ids)}


def export_onnx(task, output: str | os.PathLike, *, quantize: str | None = None, opset: int = OPSET) -> Path:
    """Write ``output``: the task's backbone as ONNX (``quantize="int8"``: ONNX Runtime's dynamic
    int8 quantization of its matrix products), the head's weights, ``s2s_task.json`` and the
    tokenizer. ``load_model(checkpoint=output)`` runs it on ONNX Runtime."""
    require()
    if not getattr(task, "onnx_export", False) or task.backbone.kind != ENCODER:
        raise ExportError(
            f"{type(task).__name__} on {type(task.backbone).__name__} does not export to ONNX; tasks that "
            f"do, on an encoder backbone: {', '.join(exportable_tasks()) or 'none installed'}"
        )
    if quantize not in (None, "int8"):
        raise ExportError(f"quantize={quantize!r}; ONNX export supports int8")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in task.parameters()):
        raise ExportError("export a float32 model on the CPU: load it without dtype= / device moves")
    names, hidden_states = _output_names(task)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUTS, *names) if name != "pooler_output"}
    axes["pooler_output"] = {0: "batch"}
    graph = output / ONNX_FILE
    with task.inference(), atomic_write(graph) as handle:  # the exporter restores the wrapper's mode: eval
        torch.onnx.export(
            _BackboneOutputs(task.backbone, hidden_states).eval(), tuple(_example_batch(task).values()), handle,
            input_names=list(INPUTS), output_names=names, dynamic_axes=axes, opset_version=opset, dynamo=False,
        )
    if quantize == "int8":
        _quantize_int8(graph)
    save_weights(task.head_state_dict(), output / HEAD_FILE)
    onnx = {"outputs": names, "opset": opset, "quantize": quantize, "torch": torch.__version__}
    save_recipe(task, output, **{ONNX_KEY: onnx})
    logger.info("exported %s to %s%s", type(task).__name__, graph, " (int8)" if quantize else "")
    return output


def exportable_tasks() -> list[str]:
    """The installed tasks that export to ONNX."""
    return sorted(entry.name for entry in get_plugins().tasks.entries() if getattr(entry.cls, "onnx_export", False))


def _quantize_int8(graph: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = graph.with_suffix(".int8.onnx")
    quantize_dynamic(str(graph), str(quantized), weight_type=QuantType.QInt8)
    shutil.move(quantized, graph)
