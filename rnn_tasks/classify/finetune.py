"""A classifier started from a language model (ULMFiT; the shared part is rnn_tasks.finetune):
the LM's tokenizer, embedding and recurrent layers, a new head; the layer groups are

    head (new; with a bidirectional classifier's backward direction), rnn layer L-1, ..., rnn layer 0, embedding

The names match because both models are Embedding `embed` -> recurrent `rnn` -> Linear
`head` (rnn_tasks.lm.model, rnn_tasks.classify.model); a classifier's `rnn` has the LM's
parameters as its forward direction.
"""

from __future__ import annotations

from torch import nn

from rnn_tasks import finetune
from rnn_tasks.classify.data import TextEncoder
from rnn_tasks.classify.model import Classifier
from rnn_tasks.classify.spec import ClassifySpec
from rnn_tasks.finetune import PretrainedLM
from rnn_tasks.lm.spec import one_way_why
from rnn_tasks.spec import SpecError


def encoder(lm: PretrainedLM, spec: ClassifySpec) -> TextEncoder:
    """The LM's own tokenizer, so that embedding row i means the token it meant to the LM;
    it folds case if the LM's did, and the spec must say so (check_sources adopts it)."""
    tokenizer = finetune.tokenizer(lm, "a classifier")
    if spec.lowercase != tokenizer.lowercase:
        raise SpecError("lowercase", f"must be {tokenizer.lowercase} with init_from: the classifier reads text as "
                                     "the language model's tokenizer does")
    try:
        return TextEncoder(tokenizer, lowercase=False, max_len=spec.max_len)
    except ValueError as exc:  # a vocabulary without <pad>=0, <unk>=1
        raise SpecError("init_from", f"the language model's tokenizer does not suit a classifier: {exc}") from None


def copy_weights(model: Classifier, lm: PretrainedLM) -> list[str]:
    """Copy the LM's embedding and recurrent weights into model (every member of an
    ensemble; a bidirectional one's backward direction keeps its fresh weights); the names
    copied. A shape that differs is refused naming the spec field behind it."""
    config = model.config
    finetune.check_shape(lm, arch=config.arch, embed=config.embed, hidden=config.hidden, layers=config.layers)
    if config.bidirectional and config.layers > 1:
        why = one_way_why("the language model", config.layers, "classifier")
        raise SpecError("bidirectional", f"must be false with init_from: {why}")
    networks = model.networks()
    prefixes = [""] if len(networks) == 1 else [f"members.{k}." for k in range(len(networks))]
    return [name for net, prefix in zip(networks, prefixes, strict=True)
            for name in finetune.copy_weights(net.embed, net.rnn, lm, prefix)]


def layer_groups(model: Classifier) -> list[list[nn.Parameter]]:
    """The parameters by ULMFiT layer group, head first: head, rnn layers top down,
    embedding; an ensemble's members' groups side by side (group k of every member)."""
    per_member = [finetune.layer_groups(list(net.head.parameters()), net.embed, net.rnn) for net in model.networks()]
    return [[p for groups in per_member for p in groups[k]] for k in range(len(per_member[0]))]
