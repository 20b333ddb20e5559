"""A classifier started from a language model and fine-tuned as ULMFiT does (Howard and
Ruder 2018): the LM's embedding and recurrent layers are copied (its next-token head is
not), then the layer groups train at discriminative learning rates and thaw one at a time:

    group   layers              lr                    trains from progress (unfreeze u, n groups)
    0       head (new)          lr                    0
    1       rnn layer L-1       lr / 2.6              u / (n - 1)
    ...     ...                 ...                   ...
    n-1     embedding           lr / 2.6^(n-1)        u

The names match because both models are Embedding `embed` -> recurrent `rnn` -> Linear
`head` (rnn_tasks.lm.model, rnn_tasks.classify.model); a unidirectional classifier's
`rnn` has exactly the LM's parameters.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnn_tasks import checkpoint
from rnn_tasks.classify.data import TextEncoder
from rnn_tasks.classify.model import TextClassifier
from rnn_tasks.classify.spec import ClassifySpec
from rnn_tasks.spec import SpecError
from rnn_tasks.tokenizer import tokenizer_from_json

COPIED = ("embed.", "rnn.")  # parameter name prefixes taken from the LM


@dataclass(frozen=True)
class PretrainedLM:
    """What a classifier takes from a language model's checkpoint."""

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


def encoder(lm: PretrainedLM, spec: ClassifySpec) -> TextEncoder:
    """The LM's own tokenizer, so that embedding row i means the token it meant to the LM."""
    tokenizer = tokenizer_from_json(lm.tokenizer_json)
    if tokenizer.kind == "char":
        raise SpecError("init_from", "is a character language model; a classifier starts from a word or BPE one")
    try:
        return TextEncoder(tokenizer, lowercase=False, max_len=spec.max_len)
    except ValueError as exc:  # a vocabulary without <pad>=0, <unk>=1
        raise SpecError("init_from", f"the language model's tokenizer does not suit a classifier: {exc}") from None


def copy_weights(model: TextClassifier, lm: PretrainedLM) -> list[str]:
    """Copy the LM's embedding and recurrent weights into model; the names copied.
    A shape that differs is refused naming the spec field behind it."""
    for name in ("arch", "embed", "hidden", "layers"):
        mine, theirs = getattr(model.config, name), lm.model.get(name)
        if mine != theirs:
            raise SpecError(name, f"is {mine!r}, the language model's (init_from) is {theirs!r}")
    if model.config.bidirectional:
        raise SpecError("bidirectional", "must be false with init_from: the language model reads one way")
    copied = []
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.startswith(COPIED):
                continue
            source = lm.weights.get(name)
            if source is None or source.shape != param.shape:
                found = None if source is None else tuple(source.shape)
                raise SpecError("init_from", f"the language model's {name} is {found}, the classifier's "
                                             f"{tuple(param.shape)}")
            param.copy_(source)
            copied.append(name)
    return copied


def layer_groups(model: TextClassifier) -> list[list[nn.Parameter]]:
    """The parameters by ULMFiT layer group, head first: head, rnn layers top down, embedding."""
    layers = model.config.layers
    rnn: list[list[nn.Parameter]] = [[] for _ in range(layers)]
    for name, param in model.rnn.named_parameters():  # weight_ih_l0, bias_hh_l2, ...
        rnn[int(name.rsplit("_l", 1)[1])].append(param)
    return [list(model.head.parameters()), *reversed(rnn), list(model.embed.parameters())]


def lr_scales(groups: int, decay: float) -> list[float]:
    """Each group's share of the peak learning rate: 1, 1/decay, 1/decay^2, ... (head first)."""
    return [decay ** -i for i in range(groups)]


def thawed(groups: int, progress: float, unfreeze: float) -> int:
    """How many groups (head first) train at this progress: one more every unfreeze / (groups - 1)."""
    if unfreeze <= 0 or groups == 1:
        return groups
    return min(groups, 1 + math.floor(progress / unfreeze * (groups - 1)))


def set_trainable(groups: list[list[nn.Parameter]], count: int) -> None:
    """The first `count` groups train; the others are frozen (no gradient, so AdamW skips them)."""
    for i, params in enumerate(groups):
        for param in params:
            param.requires_grad_(i < count)
