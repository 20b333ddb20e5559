"""A model started from a language model and fine-tuned as ULMFiT does (Howard and Ruder
2018): the LM's embedding and recurrent layers are copied (its next-token head is not),
then the layer groups train at discriminative learning rates and thaw one at a time:

    group   layers                           lr                    trains from progress (unfreeze u, n groups)
    0       new (head; decoder; reverse dir) lr                    0
    1       rnn layer L-1                    lr / 2.6              u / (n - 1)
    ...     ...                              ...                   ...
    n-1     embedding                        lr / 2.6^(n-1)        u

Every task that starts from an LM (a classifier, a translator's encoder) has an
Embedding `embed` feeding a recurrent `rnn` whose forward direction has exactly the LM's
parameters and names (rnn_tasks.lm.model); what the LM did not give is group 0. The
submit-time check of the LM's job is rnn_tasks.lm.spec.source_lm (stdlib).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnn_tasks import checkpoint, loop
from rnn_tasks.spec import SpecError
from rnn_tasks.tokenizer import Tokenizer, tokenizer_from_json

REVERSE = "_reverse"  # suffix of a bidirectional rnn's backward-direction parameters (weight_ih_l0_reverse)


@dataclass(frozen=True)
class PretrainedLM:
    """What a model takes from a language model's checkpoint."""

    model: dict[str, Any]  # its LMConfig as stored (arch, embed, hidden, layers, vocab_size, ...)
    tokenizer_json: str
    weights: dict[str, torch.Tensor]


def read_lm(raw: bytes) -> PretrainedLM:
    """A language model's best checkpoint, as the worker hands it over (its bytes)."""
    with tempfile.TemporaryDirectory(prefix="rnnq-init-") as scratch:
        path = Path(scratch) / "lm.safetensors"
        path.write_bytes(raw)
        ckpt, weights = checkpoint.load(path)
    if ckpt.task != "lm":
        raise SpecError("init_from", f"is a {ckpt.task!r} checkpoint, not a language model")
    return PretrainedLM(dict(ckpt.meta["model"]), str(ckpt.meta["tokenizer"]), weights)


def pretrained(init_from: str | None, files: dict[str, bytes]) -> PretrainedLM | None:
    """The language model a fresh run starts from (the worker passes its best checkpoint
    as files["init_from"]); None without init_from."""
    if init_from is None:
        return None
    if "init_from" not in files:
        raise SpecError("init_from", f"the checkpoint of language model {init_from} was not given")
    return read_lm(files["init_from"])


def tokenizer(lm: PretrainedLM, model: str) -> Tokenizer:
    """The LM's own tokenizer, so that embedding row i means the token it meant to the LM;
    `model` names what starts from it ("a classifier") in the refusal of a char LM."""
    tok = tokenizer_from_json(lm.tokenizer_json)
    if tok.kind == "char":
        raise SpecError("init_from", f"is a character language model; {model} starts from a word or BPE one")
    return tok


def check_shape(lm: PretrainedLM, **shape: Any) -> None:
    """Refuse, naming the spec field, a value (arch, embed, hidden, layers) that differs from the LM's."""
    for name, mine in shape.items():
        theirs = lm.model.get(name)
        if mine != theirs:
            raise SpecError(name, f"is {mine!r}, the language model's (init_from) is {theirs!r}")


def copy_weights(embed: nn.Embedding, rnn: nn.RNNBase, lm: PretrainedLM, prefix: str = "") -> list[str]:
    """Copy the LM's embedding and recurrent weights into embed and rnn's forward direction
    (a backward direction keeps its fresh weights); the names copied, as `prefix` + the
    LM's name. Check the shape fields first (check_shape): this names only init_from."""
    targets = [("embed.weight", embed.weight)]
    targets += [(f"rnn.{name}", p) for name, p in rnn.named_parameters() if not name.endswith(REVERSE)]
    copied = []
    with torch.no_grad():
        for name, param in targets:
            source = lm.weights.get(name)
            if source is None or source.shape != param.shape:
                found = None if source is None else tuple(source.shape)
                raise SpecError("init_from", f"the language model's {name} is {found}, the model's "
                                             f"{prefix}{name} {tuple(param.shape)}")
            param.copy_(source)
            copied.append(prefix + name)
    return copied


def layer_groups(new: list[nn.Parameter], embed: nn.Embedding, rnn: nn.RNNBase) -> list[list[nn.Parameter]]:
    """The parameters by ULMFiT layer group: the new ones (with rnn's backward direction,
    which the LM did not give), rnn's layers top down, the embedding."""
    fresh = list(new)
    layers: list[list[nn.Parameter]] = [[] for _ in range(rnn.num_layers)]
    for name, param in rnn.named_parameters():  # weight_ih_l0, bias_hh_l2, weight_hh_l1_reverse, ...
        if name.endswith(REVERSE):
            fresh.append(param)
        else:
            layers[int(name.rsplit("_l", 1)[1])].append(param)
    return [fresh, *reversed(layers), list(embed.parameters())]


def lr_scales(groups: int, decay: float) -> list[float]:
    """Each group's share of the peak learning rate: 1, 1/decay, 1/decay^2, ... (new first)."""
    return [decay ** -i for i in range(groups)]


def thawed(groups: int, progress: float, unfreeze: float) -> int:
    """How many groups (new first) train at this progress: one more every unfreeze / (groups - 1)."""
    if unfreeze <= 0 or groups == 1:
        return groups
    return min(groups, 1 + math.floor(progress / unfreeze * (groups - 1)))


def set_trainable(groups: list[list[nn.Parameter]], count: int) -> None:
    """The first `count` groups train; the others are frozen (no gradient, so AdamW skips them)."""
    for i, params in enumerate(groups):
        for param in params:
            param.requires_grad_(i < count)


class Schedule:
    """A run's layer groups with their learning-rate shares, thawed as training progresses."""

    def __init__(self, groups: list[list[nn.Parameter]], lr_decay: float, unfreeze: float) -> None:
        self.groups, self.lr_decay, self.unfreeze = groups, lr_decay, unfreeze

    def lr_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        return list(zip(self.groups, lr_scales(len(self.groups), self.lr_decay), strict=True))

    def thaw(self, progress: float) -> None:
        set_trainable(self.groups, thawed(len(self.groups), progress, self.unfreeze))


class FineTunable(loop.Problem):
    """A task's Problem that may start from a language model: with a schedule (set by a
    run with init_from, fresh or resumed, so the optimizer's groups match its checkpoint)
    it trains by ULMFiT's groups; without one, the whole model at the full rate."""

    schedule: Schedule | None = None

    def lr_groups(self) -> list[tuple[list[nn.Parameter], float]] | None:
        return self.schedule.lr_groups() if self.schedule is not None else None

    def before_step(self, progress: float) -> None:
        if self.schedule is not None:
            self.schedule.thaw(progress)
