"""A translator whose encoder starts from a language model (ULMFiT; the shared part is
rnn_tasks.finetune). The source side reads with the LM's tokenizer; the encoder's
embedding and the forward direction of its recurrent layers take the LM's weights; the
target side keeps its own tokenizer. The layer groups:

    group   layers                                                 lr
    0       decoder and attention, encoder's backward direction   lr           (new)
    1       encoder rnn layer L-1, forward direction               lr / 2.6
    ...     ...                                                    ...
    L+1     encoder embedding                                      lr / 2.6^(L+1)

The LM reads left to right, so it starts only the forward direction: with a
bidirectional encoder each direction has hidden // 2 units, which must be the LM's hidden.
Only a one-layer LM starts a bidirectional encoder: above the first layer, each direction
reads both directions' states (2 x hidden // 2 inputs), the LM's layers only their own.
"""

from __future__ import annotations

from torch import nn

from rnn_tasks import finetune
from rnn_tasks.finetune import PretrainedLM
from rnn_tasks.spec import SpecError
from rnn_tasks.tokenizer import Tokenizer
from rnn_tasks.translate.data import special_ids
from rnn_tasks.translate.model import Seq2Seq

PREFIX = "encoder."  # where the LM's parameters land in a Seq2Seq


def source_tokenizer(lm: PretrainedLM, target: Tokenizer) -> Tokenizer:
    """The LM's own tokenizer for the source side, so that embedding row i means the token
    it meant to the LM. Its <pad> must be the target's: the encoder masks by one pad id."""
    tok = finetune.tokenizer(lm, "a translator's encoder")
    try:
        pad, _, _ = special_ids(tok)
    except ValueError as exc:
        raise SpecError("init_from", f"the language model's tokenizer does not suit a translator: {exc}") from None
    if pad != target.pad_id:
        raise SpecError("init_from", f"the language model's <pad> is id {pad}, the target side's {target.pad_id}")
    return tok


def copy_encoder(model: Seq2Seq, lm: PretrainedLM) -> list[str]:
    """Copy the LM's embedding and recurrent weights into the encoder (its forward
    direction); the names copied. A shape that differs is refused naming the spec field."""
    config = model.config
    hidden = {} if config.bidirectional else {"hidden": config.hidden}  # bidirectional: per direction, below
    finetune.check_shape(lm, arch=config.arch, embed=config.embed, layers=config.layers, **hidden)
    if config.bidirectional and config.layers > 1:  # what check_sources adopts, for specs that skipped it
        raise SpecError("bidirectional", f"must be false with init_from a language model of {config.layers} layers: "
                                         "above the first, a bidirectional encoder's layers read both directions")
    theirs = lm.model.get("hidden")
    if config.bidirectional and config.hidden // 2 != theirs:
        raise SpecError("hidden", f"is {config.hidden}, so each direction of the bidirectional encoder has "
                                  f"{config.hidden // 2} units (hidden // 2); the language model's (init_from) "
                                  f"hidden is {theirs!r}")
    return finetune.copy_weights(model.encoder.embed, model.encoder.rnn, lm, PREFIX)


def layer_groups(model: Seq2Seq) -> list[list[nn.Parameter]]:
    """The parameters by ULMFiT layer group: decoder (and the encoder's backward direction)
    first, then the encoder's layers top down, its embedding last."""
    return finetune.layer_groups(list(model.decoder.parameters()), model.encoder.embed, model.encoder.rnn)
