"""Tokenizers: characters, words and byte-level BPE behind one small protocol.

    kind    unit                         unknown input              specials (ids)
    char    each character of the corpus UnknownCharacterError      none (old layout, kept)
    word    \\w+ runs and punctuation     <unk>                      <pad>=0 <unk>=1 <bos>=2 <eos>=3
    bpe     byte-level BPE (HF tokenizers) never: any text encodes  <pad>=0 <unk>=1 <bos>=2 <eos>=3

Every tokenizer serialises to JSON (`to_json`) and back (`tokenizer_from_json`) so it can
travel inside a checkpoint header; nothing is pickled.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from tokenizers import Tokenizer as HfTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from rnn_tasks.errors import DataError, InputError
from rnn_tasks.spec import TOKENIZERS as KINDS
from rnn_tasks.text import WORD_RE

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
# decode() glues these to their neighbours instead of putting a space around them.
# The apostrophe sticks on both sides so that "don't" (don ' t) comes back whole.
_NO_SPACE_BEFORE = frozenset(".,;:!?)]}%'")
_NO_SPACE_AFTER = frozenset("([{'")


class UnknownCharacterError(DataError):
    """Text contains characters the model never saw in training."""


class TokenizerError(InputError):
    """A tokenizer cannot be built or read back (bad kind, corrupt JSON)."""


@runtime_checkable
class Tokenizer(Protocol):
    """What models, data pipelines and checkpoints rely on."""

    kind: str
    lowercase: bool  # folds case before reading text ("Great" and "great" are one token)
    pad_id: int | None
    unk_id: int | None
    bos_id: int | None
    eos_id: int | None

    def __len__(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def to_json(self) -> str: ...


class CharTokenizer:
    """Maps each character of a fixed vocabulary to an id and back.

    Unknown characters are an error (`UnknownCharacterError` lists them) rather than
    silently mapped to something the model was never trained on.
    """

    kind = "char"
    lowercase = False
    # The char LM predates specials; its ids are exactly the sorted characters.
    pad_id: int | None = None
    unk_id: int | None = None
    bos_id: int | None = None
    eos_id: int | None = None

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

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "chars": self.chars})


class WordTokenizer:
    """Whole words and single punctuation marks; anything outside the vocabulary is <unk>.

    Case is kept unless `lowercase`, and whitespace is not a token, so decode() gives the
    words back separated by single spaces (no space before closing punctuation): a
    normalised spacing of the original, not the original bytes.
    """

    kind = "word"

    def __init__(self, tokens: Sequence[str], specials: bool = True, lowercase: bool = False) -> None:
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary tokens must be distinct")
        self.specials, self.lowercase = specials, lowercase
        self.tokens = list(tokens)
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        named = self._ids.get
        # Without the full special set a word tokenizer still needs <unk>: it is its only fallback.
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = named(PAD), named(UNK), named(BOS), named(EOS)
        if self.unk_id is None:
            raise ValueError("a word vocabulary needs an <unk> token")
        self._special_ids = frozenset(i for i in (self.pad_id, self.unk_id, self.bos_id, self.eos_id) if i is not None)

    @classmethod
    def fit(
        cls, texts: Iterable[str], *, min_freq: int = 1, max_vocab: int | None = None, specials: bool = True,
        lowercase: bool = False,
    ) -> WordTokenizer:
        """Keep words seen at least min_freq times, at most max_vocab of them (most frequent first)."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(WORD_RE.findall(text.lower() if lowercase else text))
        # Most frequent first; ties broken alphabetically so the vocabulary is reproducible.
        ranked = sorted(
            (w for w, n in counts.items() if n >= min_freq and w not in SPECIALS), key=lambda w: (-counts[w], w)
        )
        if max_vocab is not None:
            ranked = ranked[:max_vocab]
        head = list(SPECIALS) if specials else [UNK]
        return cls(head + ranked, specials=specials, lowercase=lowercase)

    def __len__(self) -> int:
        return len(self.tokens)

    def split(self, text: str) -> list[str]:
        """The word and punctuation tokens of text, before vocabulary lookup."""
        return WORD_RE.findall(text.lower() if self.lowercase else text)

    def unknown(self, text: str) -> list[str]:
        """Words of text outside the vocabulary (they encode as <unk>), in order of appearance."""
        return list(dict.fromkeys(w for w in self.split(text) if w not in self._ids))

    def encode(self, text: str) -> list[int]:
        get, unk = self._ids.get, self.unk_id
        return [get(w, unk) for w in self.split(text)]  # type: ignore[misc]

    def decode(self, ids: Iterable[int]) -> str:
        words = [self.tokens[i] for i in ids if i not in self._special_ids]
        return join_words(words)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "tokens": self.tokens, "specials": self.specials,
                           "lowercase": self.lowercase})


def join_words(words: Iterable[str]) -> str:
    """Words separated by spaces, except before closing and after opening punctuation."""
    out: list[str] = []
    glue = True  # no space before the first word
    for word in words:
        if out and not glue and word not in _NO_SPACE_BEFORE:
            out.append(" ")
        out.append(word)
        glue = word in _NO_SPACE_AFTER
    return "".join(out)


class BpeTokenizer:
    """Byte-level BPE (HF `tokenizers`): text is split into UTF-8 bytes first, so every
    string encodes, and decode(encode(text)) == text exactly (== text.lower() with
    `lowercase`, which HF's normaliser applies and stores with the tokenizer)."""

    kind = "bpe"

    def __init__(self, hf: HfTokenizer, specials: bool = True) -> None:
        self.hf = hf
        # Text that happens to contain "<bos>" is text, not the special token (else the round trip
        # loses it). HF does not serialise this flag, so it is set on every construction.
        hf.encode_special_tokens = True
        self.specials = specials
        self.lowercase = isinstance(hf.normalizer, normalizers.Lowercase)
        named = hf.token_to_id
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = named(PAD), named(UNK), named(BOS), named(EOS)

    @classmethod
    def fit(
        cls, texts: Iterable[str], *, vocab_size: int = 8000, min_freq: int = 1, specials: bool = True,
        lowercase: bool = False,
    ) -> BpeTokenizer:
        hf = HfTokenizer(models.BPE())
        if lowercase:
            hf.normalizer = normalizers.Lowercase()
        # add_prefix_space=False: a leading space would make decode(encode(t)) != t.
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_freq,
            special_tokens=list(SPECIALS) if specials else [],
            # All 256 byte symbols, even unseen ones, so text never seen in training still encodes.
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(texts, trainer=trainer)
        return cls(hf, specials=specials)

    def __len__(self) -> int:
        return int(self.hf.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Iterable[int]) -> str:
        return str(self.hf.decode(list(ids), skip_special_tokens=True))

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "tokenizer": self.hf.to_str(), "specials": self.specials})


def fit_tokenizer(
    kind: str,
    texts: Iterable[str],
    *,
    min_freq: int = 1,
    max_vocab: int | None = None,
    vocab_size: int = 8000,
    specials: bool = True,
    lowercase: bool = False,
) -> Tokenizer:
    """A tokenizer of the given kind fitted on texts.

    char ignores the options (its vocabulary is every character seen, no specials; it
    refuses lowercase); word uses min_freq and max_vocab; bpe uses vocab_size and min_freq
    (pair frequency); both fold case with lowercase.
    """
    if kind == "char":
        if lowercase:
            raise TokenizerError("lowercase needs a word or BPE tokenizer (a character one keeps case)")
        return CharTokenizer.fit("".join(texts))
    if kind == "word":
        return WordTokenizer.fit(texts, min_freq=min_freq, max_vocab=max_vocab, specials=specials, lowercase=lowercase)
    if kind == "bpe":
        return BpeTokenizer.fit(texts, vocab_size=vocab_size, min_freq=min_freq, specials=specials,
                                lowercase=lowercase)
    raise TokenizerError(f"tokenizer kind must be one of {', '.join(KINDS)}, got {kind!r}")


def tokenizer_from_json(text: str) -> Tokenizer:
    """Rebuild a tokenizer from its to_json() form."""
    try:
        data: dict[str, Any] = json.loads(text)
        kind = data["kind"]
        if kind == "char":
            return CharTokenizer(data["chars"])
        if kind == "word":
            return WordTokenizer(data["tokens"], specials=bool(data.get("specials", True)),
                                 lowercase=bool(data.get("lowercase", False)))
        if kind == "bpe":
            return BpeTokenizer(HfTokenizer.from_str(data["tokenizer"]), specials=bool(data.get("specials", True)))
    except Exception as exc:  # noqa: BLE001 - HF raises bare Exception for a corrupt tokenizer
        raise TokenizerError(f"not a tokenizer description: {exc}") from None
    raise TokenizerError(f"unknown tokenizer kind {kind!r}")
