"""Character vocabulary: the sorted set of characters seen in the training corpus."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class UnknownCharacterError(ValueError):
    """Text contains characters the model never saw in training."""


class CharTokenizer:
    """Maps each character of a fixed vocabulary to an id and back.

    Unknown characters are an error (`UnknownCharacterError` lists them) rather than
    silently mapped to something the model was never trained on.
    """

    def __init__(self, chars: Sequence[str]) -> None:
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("vocabulary must be distinct single characters")
        self.chars = "".join(chars)
        self._ids = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def fit(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """Characters of text that are not in the vocabulary, in order of appearance."""
        return list(dict.fromkeys(c for c in text if c not in self._ids))

    def encode(self, text: str) -> list[int]:
        missing = self.unknown(text)
        if missing:
            raise UnknownCharacterError(f"characters not in the vocabulary: {''.join(missing)!r}")
        ids = self._ids
        return [ids[c] for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        chars = self.chars
        return "".join(chars[i] for i in ids)
