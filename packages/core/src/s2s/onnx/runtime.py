"""An exported folder as a task: the backbone on ONNX Runtime, the head in PyTorch."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from ..backbone import BackboneOutput
from ..checkpoint import CheckpointError, load_into, read_state_dict
from ..folder import HEAD_FILE, ONNX_FILE, TASK_FILE, read_json
from . import INPUTS

logger = logging.getLogger(__name__)

ONNX_KEY = "onnx"  # s2s_task.json: what the exported graph returns, its opset and quantization


def require():
    """``onnxruntime``, or an error naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("ONNX export and inference need onnxruntime: pip install 's2s-core[onnx]'") from None
    return onnxruntime


def is_onnx_folder(path) -> bool:
    return Path(path, ONNX_FILE).is_file()


class OnnxBackbone(nn.Module):
    """An exported backbone behind the backbone contract's ``forward`` (2-D padding masks).

    It keeps the sizes of the backbone it was exported from (``hidden_size``,
    ``max_positions``, ``vocab_size``, ``kind``, ``config``) and has no parameters."""

    def __init__(self, session, outputs: list[str], source: nn.Module):
        super().__init__()
        self.session, self.outputs = session, outputs
        self.config, self.kind, self.capabilities = source.config, source.kind, source.capabilities
        self.hidden_size, self.max_positions, self.vocab_size = source.hidden_size, source.max_positions, source.vocab_size

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states=False, **unused):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if attention_mask.dim() != 2 or any(unused.get(k) for k in ("past_key_values", "use_cache")):
            raise ValueError("an ONNX backbone takes padding masks [batch, seq] and keeps no cache")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        feed = {name: t.detach().cpu().long().numpy() for name, t in zip(INPUTS, (input_ids, attention_mask, token_type_ids))}
        arrays = self.session.run(self.outputs, feed)  # on the CPU; the states go where the inputs are
        values = {name: torch.from_numpy(v).to(input_ids.device) for name, v in zip(self.outputs, arrays)}
        hidden = [values[name] for name in self.outputs if name.startswith("hidden_states.")]
        if output_hidden_states and not hidden:
            raise ValueError("this ONNX export does not return every layer's states: export the task again")
        return BackboneOutput(
            last_hidden_state=values["last_hidden_state"],
            pooler_output=values.get("pooler_output"),
            hidden_states=tuple(hidden) if output_hidden_states else None,
        )


def session(path: Path, entry: dict):
    """An ONNX Runtime session on ``path`` (threads: torch's), with errors that name the file.

    Its threads spin between the operators of a run but not after it: spinning on past the run
    (ONNX Runtime's default) takes the cores from what the process runs next, the task's head
    in PyTorch or another session (int8 at 2 threads ran slower than at 1)."""
    onnxruntime = require()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.force_spinning_stop", "1")
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / InvalidGraph classes
        message = str(exc)
        if "opset" in message.lower():
            raise CheckpointError(
                f"{path}: ONNX Runtime {onnxruntime.__version__} cannot run this graph of opset "
                f"{entry.get('opset')} (exported with torch {entry.get('torch')}): upgrade onnxruntime or "
                f"export again with an opset it supports. Detail: {message}"
            ) from None
        raise CheckpointError(
            f"{path} cannot be loaded by ONNX Runtime {onnxruntime.__version__} (truncated or not an "
            f"ONNX file? export it again). Detail: {message}"
        ) from None


def attach(task, folder: Path) -> None:
    """Replace ``task``'s backbone by the folder's ONNX graph and load the head's weights."""
    entry = read_json(folder / TASK_FILE).get(ONNX_KEY)
    if not isinstance(entry, dict) or not isinstance(entry.get("outputs"), list):
        raise CheckpointError(f"{folder / TASK_FILE}: no '{ONNX_KEY}' entry listing the graph's outputs; export the model again")
    task.backbone = OnnxBackbone(session(folder / ONNX_FILE, entry), entry["outputs"], task.backbone)
    head = folder / HEAD_FILE
    report = load_into(task, read_state_dict(head) if head.is_file() else {}, source=str(head), model_types=())
    report.log(logger)
    task.eval()
    logger.info("%s runs on ONNX Runtime %s", folder, require().__version__)
