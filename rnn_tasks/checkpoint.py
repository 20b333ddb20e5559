"""Self-describing, pickle-free checkpoints in one safetensors file.

    model.<name>        weights (a tied head is stored once, as embed.weight)
    optim.<i>.<name>    AdamW state per parameter (resume checkpoints only)
    rng.torch           CPU generator state (resume checkpoints only)
    header "rnnq"       JSON: format version, spec, model config, tokenizer, step,
                        losses, data position, optimizer param groups

The tokenizer travels as its own JSON (`tokenizer_json`). Char models also keep the
plain `vocab` string that format 1 had, so a char checkpoint is still a format-1 file
any rnnq reads; word and BPE checkpoints are format 2, which an older rnnq refuses
with a clear message instead of misreading them as char models.

One file written to a temporary name and renamed, so a reader sees the old checkpoint
or the new one, never half of one. Loading parses only tensors and JSON: no pickle.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from rnn_tasks.models import CharLM, ModelConfig
from rnn_tasks.tokenizer import CharTokenizer, Tokenizer, tokenizer_from_json

FORMAT_VERSION = 1  # char models: the original layout
TOKENIZER_FORMAT_VERSION = 2  # word and BPE models: needs tokenizer_json
READABLE_VERSIONS = (FORMAT_VERSION, TOKENIZER_FORMAT_VERSION)


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or of an unsupported format."""


@dataclass
class Checkpoint:
    """What a checkpoint holds besides the tensors."""

    spec: dict[str, Any]
    model: ModelConfig
    vocab: str | None  # the characters of a char model (what prompt checks use); None otherwise
    step: int
    best_val_loss: float | None = None
    val_loss: float | None = None
    train_loss: float | None = None
    position: dict[str, Any] = field(default_factory=dict)  # epoch, window, elapsed
    format_version: int = FORMAT_VERSION
    tokenizer_json: str | None = None  # Tokenizer.to_json(); absent in checkpoints older than word/BPE

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer, **fields: Any) -> Checkpoint:
        """A checkpoint header that stores `tokenizer` (and the matching format version)."""
        if isinstance(tokenizer, CharTokenizer):
            return cls(vocab=tokenizer.chars, tokenizer_json=tokenizer.to_json(), **fields)
        return cls(vocab=None, tokenizer_json=tokenizer.to_json(), format_version=TOKENIZER_FORMAT_VERSION, **fields)

    def tokenizer(self) -> Tokenizer:
        if self.tokenizer_json is not None:
            return tokenizer_from_json(self.tokenizer_json)
        if self.vocab is None:
            raise CheckpointError("checkpoint has neither a tokenizer nor a character vocabulary")
        return CharTokenizer(self.vocab)  # format 1 written before tokenizers were stored

    def build_model(self) -> CharLM:
        return CharLM(self.model)


def save(
    path: Path,
    meta: Checkpoint,
    model: CharLM,
    optimizer: torch.optim.Optimizer | None = None,
    rng: torch.Tensor | None = None,
) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in _own_weights(model).items()}
    write(path, tensors, asdict(meta), optimizer, rng)


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
        save_file(tensors, tmp, metadata={"rnnq": json.dumps(header)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_meta(path: Path) -> Checkpoint:
    header = _header(path)
    return _meta_from_header(header)


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[Checkpoint, CharLM]:
    """Rebuild the model described by a checkpoint, on any device."""
    meta = read_meta(path)
    model = meta.build_model()
    weights = _tensors(path, "model.")
    if meta.model.tie_weights:
        weights["head.weight"] = weights["embed.weight"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"{path.name}: weights do not match the stored model config: {exc}") from None
    return meta, model.to(device)


def load_training_state(path: Path) -> tuple[dict[str, Any] | None, torch.Tensor | None]:
    """The optimizer state dict and RNG state saved for resuming, if present."""
    header = _header(path)
    optim = _tensors(path, "optim.")
    rng = _tensors(path, "rng.").get("torch")
    if "param_groups" not in header:
        return None, rng
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in optim.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": dict(sorted(state.items())), "param_groups": header["param_groups"]}, rng


def _own_weights(model: CharLM) -> dict[str, torch.Tensor]:
    weights = model.state_dict()
    if model.config.tie_weights:
        weights.pop("head.weight")
    return weights


def _header(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        header = json.loads(metadata["rnnq"])
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own types for corrupt files
        raise CheckpointError(f"{path.name} is not an rnnq checkpoint: {exc}") from None
    version = header.get("format_version")
    if version not in READABLE_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise CheckpointError(f"{path.name}: checkpoint format {version!r}, this rnnq reads {readable}")
    return dict(header)


def _meta_from_header(header: dict[str, Any]) -> Checkpoint:
    fields = {k: v for k, v in header.items() if k in Checkpoint.__dataclass_fields__}
    fields["model"] = ModelConfig(**fields["model"])
    return Checkpoint(**fields)


def _tensors(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open is not a dict
            if key.startswith(prefix):
                out[key[len(prefix) :]] = f.get_tensor(key)
    return out
