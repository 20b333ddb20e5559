"""Checkpoints of the task models (classify, forecast, translate): one safetensors file.

    model.<name>        weights
    optim.<i>.<name>    AdamW state per parameter (resume checkpoints only)
    rng.torch           CPU generator state at the start of the epoch (resume only)
    header "rnnq"       JSON: format, task, spec, task meta (vocabularies, labels,
                        normaliser), step, losses, held-out figures, data position,
                        optimizer param groups

Written to a temporary name and renamed (a reader sees the old file or the new one),
read as tensors and JSON only: nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from rnn_tasks.checkpoint import CheckpointError, write

FORMAT = "rnnq-task/1"


@dataclass
class TaskCheckpoint:
    task: str
    spec: dict[str, Any]
    meta: dict[str, Any]  # what the task needs besides weights to rebuild and use the model
    step: int
    val_loss: float | None = None
    train_loss: float | None = None
    best_val_loss: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # held-out figures at this checkpoint
    position: dict[str, Any] = field(default_factory=dict)  # epoch, batch, elapsed, stale_evals
    format: str = FORMAT


def save(path: Path, ckpt: TaskCheckpoint, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
         rng: torch.Tensor | None = None) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write(path, tensors, asdict(ckpt), optimizer, rng)


def read(path: Path) -> TaskCheckpoint:
    header = _header(path)
    known = TaskCheckpoint.__dataclass_fields__
    return TaskCheckpoint(**{k: v for k, v in header.items() if k in known})


def load(path: Path, device: torch.device | str = "cpu") -> tuple[TaskCheckpoint, dict[str, torch.Tensor]]:
    """The checkpoint's description and its model weights (a state dict on `device`)."""
    ckpt = read(path)
    return ckpt, {k: v.to(device) for k, v in _tensors(path, "model.").items()}


def load_training_state(path: Path) -> tuple[dict[str, Any] | None, torch.Tensor | None]:
    header = _header(path)
    rng = _tensors(path, "rng.").get("torch")
    if "param_groups" not in header:
        return None, rng
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in _tensors(path, "optim.").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": dict(sorted(state.items())), "param_groups": header["param_groups"]}, rng


def _header(path: Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("rnnq")
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{path.name}: not a readable checkpoint: {exc}") from None
    if raw is None:
        raise CheckpointError(f"{path.name}: no rnnq header")
    header = json.loads(raw)
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path.name}: format {header.get('format')!r}, expected {FORMAT!r}")
    return dict(header)


def _tensors(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}  # noqa: SIM118
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{path.name}: not a readable checkpoint: {exc}") from None
