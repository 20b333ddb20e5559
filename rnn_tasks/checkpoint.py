"""Self-describing, pickle-free checkpoints of every task in one safetensors file.

    model.<name>        weights (a weight tied to another is stored once, see "tied")
    optim.<i>.<name>    AdamW state per parameter (resume checkpoints only)
    ema.<i>             the moving average of parameter i, when the spec keeps one (resume only)
    rng.torch           CPU generator state at the start of the epoch (resume only)
    header "rnnq"       JSON: format, task, spec, task meta (vocabularies, tokenizer,
                        labels, model shape), step, losses, held-out figures, data
                        position, tied weights, optimizer param groups

One format for every task ("rnnq-task/1"). The reader also takes the language-model
checkpoints written before the LM became a task like the others (an integer
"format_version" 1 or 2, the tokenizer beside the model config) and presents them in
this shape, so old jobs still generate, evaluate and resume.

One file written to a temporary name and renamed, so a reader sees the old checkpoint
or the new one, never half of one. Loading parses only tensors and JSON: no pickle.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from rnn_tasks.errors import CheckpointError

__all__ = ["FORMAT", "Checkpoint", "CheckpointError", "load", "load_average", "load_training_state", "read", "save"]

FORMAT = "rnnq-task/1"
_LM_FORMAT_VERSIONS = (1, 2)  # the LM's own format before it was a task: 1 char, 2 word/BPE


@dataclass
class Checkpoint:
    """What a checkpoint holds besides the tensors."""

    task: str
    spec: dict[str, Any]
    meta: dict[str, Any]  # what the task needs besides weights to rebuild and use the model
    step: int
    val_loss: float | None = None
    train_loss: float | None = None
    best_val_loss: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # held-out figures at this checkpoint
    position: dict[str, Any] = field(default_factory=dict)  # epoch, batch, elapsed, stale_evals
    tied: dict[str, str] = field(default_factory=dict)  # weight name -> the stored weight it shares
    format: str = FORMAT


def save(path: Path, ckpt: Checkpoint, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
         rng: torch.Tensor | None = None, average: Sequence[torch.Tensor] | None = None) -> None:
    weights = model.state_dict()
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in weights.items() if k not in ckpt.tied}
    for index, value in enumerate(average or []):
        tensors[f"ema.{index}"] = value.detach().cpu().contiguous()
    write(path, tensors, asdict(ckpt), optimizer, rng)


def write(path: Path, tensors: dict[str, torch.Tensor], header: dict[str, Any],
          optimizer: torch.optim.Optimizer | None = None, rng: torch.Tensor | None = None) -> None:
    """One safetensors file with the JSON header (and, for resuming, optimizer state and
    RNG), written to a temporary name and renamed: readers never see half a file."""
    tensors, header = dict(tensors), dict(header)
    if optimizer is not None:
        osd = optimizer.state_dict()
        header["param_groups"] = osd["param_groups"]
        for index, state in osd["state"].items():
            for name, value in state.items():
                tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    if rng is not None:
        tensors["rng.torch"] = rng
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        try:
            save_file(tensors, tmp, metadata={"rnnq": json.dumps(header)})
        except SafetensorError as exc:
            error = _os_error(exc, tmp)
            if error is None:
                raise
            raise error from exc
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _os_error(exc: SafetensorError, path: str) -> OSError | None:
    """The OSError behind a safetensors write error, which names it only in its text ("...
    No space left on device (os error 28)"): a full disk then reads as ENOSPC, like any
    other write that runs out of room, and its worker gives the job to another node."""
    found = re.search(r"\(os error (\d+)\)", str(exc))
    if found is None:
        return None
    code = int(found.group(1))
    return OSError(code, os.strerror(code), path)


def read(path: Path) -> Checkpoint:
    """The checkpoint's description (no tensors are read)."""
    header = _header(path)
    if header.get("format") == FORMAT:
        known = Checkpoint.__dataclass_fields__
        return Checkpoint(**{k: v for k, v in header.items() if k in known})
    return _from_lm_format(header)


def load(path: Path, device: torch.device | str = "cpu") -> tuple[Checkpoint, dict[str, torch.Tensor]]:
    """The checkpoint's description and its model weights (a full state dict on `device`)."""
    ckpt = read(path)
    weights = {k: v.to(device) for k, v in _tensors(path, "model.").items()}
    for name, source in ckpt.tied.items():
        if source not in weights:
            raise CheckpointError(f"{path.name}: tied weight {name} points at {source}, which is missing", "checkpoint")
        weights[name] = weights[source]
    return ckpt, weights


def load_average(path: Path) -> list[torch.Tensor] | None:
    """The moving average of the parameters saved for resuming (in model.parameters() order), if any."""
    found = _tensors(path, "ema.")
    return [found[str(i)] for i in range(len(found))] if found else None


def load_training_state(path: Path) -> tuple[dict[str, Any] | None, torch.Tensor | None]:
    """The optimizer state dict and RNG state saved for resuming, if present."""
    header = _header(path)
    rng = _tensors(path, "rng.").get("torch")
    if "param_groups" not in header:
        return None, rng
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in _tensors(path, "optim.").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": dict(sorted(state.items())), "param_groups": header["param_groups"]}, rng


def _from_lm_format(header: dict[str, Any]) -> Checkpoint:
    """A language-model checkpoint of format_version 1 or 2, in today's shape.

    Its model config and tokenizer become the LM task's meta; a format-1 file written
    before tokenizers were stored has only its characters (`vocab`)."""
    tokenizer = header.get("tokenizer_json")
    if tokenizer is None:
        if header.get("vocab") is None:
            raise CheckpointError("checkpoint has neither a tokenizer nor a character vocabulary", "checkpoint")
        tokenizer = json.dumps({"kind": "char", "chars": header["vocab"]})
    model = dict(header["model"])
    position = dict(header.get("position") or {})
    if "window" in position:
        position["batch"] = position.pop("window")
    return Checkpoint(
        task="lm", spec={**header["spec"], "task": "lm"}, meta={"model": model, "tokenizer": tokenizer},
        step=int(header["step"]), val_loss=header.get("val_loss"), train_loss=header.get("train_loss"),
        best_val_loss=header.get("best_val_loss"), position=position,
        tied={"head.weight": "embed.weight"} if model.get("tie_weights") else {},
    )


def _header(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}", "checkpoint")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("rnnq")
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{path.name} is not an rnnq checkpoint: {exc}", "checkpoint") from None
    if raw is None:
        raise CheckpointError(f"{path.name} is not an rnnq checkpoint (no rnnq header)", "checkpoint")
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise CheckpointError(f"{path.name} has a corrupt header: {exc}", "checkpoint") from None
    if header.get("format") != FORMAT and header.get("format_version") not in _LM_FORMAT_VERSIONS:
        found = header.get("format", header.get("format_version"))
        raise CheckpointError(f"{path.name}: checkpoint format {found!r}, this rnnq reads {FORMAT!r} and the "
                              f"language-model formats {', '.join(map(str, _LM_FORMAT_VERSIONS))}", "checkpoint")
    return dict(header)


def _tensors(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}  # noqa: SIM118
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{path.name} is not an rnnq checkpoint: {exc}", "checkpoint") from None
