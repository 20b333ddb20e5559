"""The language model's training spec (characters, words or BPE tokens); stdlib only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rnn_tasks.spec import SpecError, TrainSpec, _between, check_tokenizer_fields

__all__ = ["LMSpec"]


@dataclass(frozen=True)
class LMSpec(TrainSpec):
    """A language model (text generation). Defaults are rnnq's CPU-tuned char-LM config."""

    TASK: ClassVar[str] = "lm"
    TEXT_INPUT: ClassVar[bool] = True
    GENERATES: ClassVar[bool] = True

    task: str = "lm"
    hidden: int = 512  # GRU 1x512 learned fastest per CPU second (README)
    lr: float = 8e-3
    tokenizer: str = "char"  # char | word | bpe
    min_freq: int = 1  # word: words seen fewer times become <unk>
    max_vocab: int | None = None  # word: keep only the most frequent words
    vocab_size: int = 8000  # bpe: target vocabulary size
    tie_weights: bool = False  # share the embedding and output matrices
    seq_len: int = 128  # truncated-BPTT window; state is carried across windows

    def validate(self) -> None:
        super().validate()
        check_tokenizer_fields(self)
        if self.tie_weights and self.embed != self.hidden:
            raise SpecError("tie_weights", f"needs embed == hidden, got {self.embed} and {self.hidden}")
        _between("seq_len", self.seq_len, 1, 1_000_000)


def check_inputs(spec: LMSpec, files: dict[str, bytes]) -> None:
    """Submit-time check of the corpus: UTF-8 text that fills a training window and a
    held-out part, counted in the run's own tokens (rnn_tasks.lm.windows)."""
    from rnn_tasks.lm import windows  # stdlib (and HF tokenizers for a short BPE corpus)

    try:
        text = files["data"].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError("data", f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    windows.check("the corpus", text, spec)
