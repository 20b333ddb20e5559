"""The spec of a speech-recognition job, its text normalisation and its input bundle; stdlib only.

The CLI reads a manifest (or a folder of name.wav + name.txt), checks every file, and
uploads one bundle: an uncompressed tar whose members are named by content, so the same
recording listed twice is stored once and the same corpus gives the same bytes (and so
the same content-addressed key) every time:

    manifest.tsv           member <TAB> name <TAB> transcript     one line per utterance
    audio/<sha256>         the recording's bytes as given (WAV, FLAC, OGG, any rate)

`name` is the path as the manifest gave it, for messages and predictions. A bundle for
`predict` has empty transcripts.
"""

from __future__ import annotations

import io
import random
import re
import tarfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from rnn_tasks.spec import SpecError, TrainedModel, TrainSpec, _between, train_spec_class

MANIFEST = "manifest.tsv"
DATA_FIELD = "DATA"
_SPACES = re.compile(r"\s+")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})


@dataclass(frozen=True)
class TranscribeSpec(TrainSpec):
    """Log-mel features -> strided 1-D convolutions -> bidirectional LSTM/GRU -> characters + blank, CTC.

    Defaults are run 1 of benchmarks/quality.py --task transcribe (README): 80 mel bands
    every 10 ms, time subsampled by 3 (33 output frames a second leave room for CTC's
    blanks between repeated letters; subsampling by 4 merged letters and did worse in
    3.6 times the steps), a 2-layer biGRU of 160 per direction over 128 conv channels.
    """

    TASK: ClassVar[str] = "transcribe"
    AUDIO_INPUT: ClassVar[bool] = True
    PREDICT_OPTIONS: ClassVar[tuple[str, ...]] = ("beam", "lm", "lm_weight", "lm_bonus")  # lm: a character LM job
    EVAL_OPTIONS: ClassVar[tuple[str, ...]] = PREDICT_OPTIONS

    task: str = "transcribe"
    arch: str = "gru"
    layers: int = 2
    hidden: int = 160  # per direction
    embed: int = 128  # channels of the convolutional front end
    dropout: float = 0.15  # between recurrent layers and before the head
    batch_size: int = 16  # utterances per step, grouped by similar length
    lr: float = 3e-3
    warmup_steps: int = 100
    eval_every: int = 200
    val_fraction: float = 0.05  # a seeded random sample of utterances held out
    patience: int | None = 10
    # Task fields.
    n_mels: int = 80  # log-mel bands, 25 ms windows every 10 ms at 16 kHz
    subsample: int = 3  # time stride of the front end: output frames every 10 * subsample ms
    max_seconds: float = 30.0  # longer utterances are refused at submit
    lowercase: bool = True  # fold case in transcripts (audio does not tell case)
    punctuation: bool = False  # keep punctuation; by default it becomes a space (audio does not tell it either)
    freq_masks: int = 2  # SpecAugment while training: mel-band masks per utterance ...
    freq_mask: int = 15  # ... each up to this many bands wide
    time_masks: int = 2  # time masks per utterance ...
    time_mask: int = 25  # ... each up to this many frames long (and at most a tenth of the utterance)
    beam: int = 8  # CTC prefix beam width of the final evaluation and of predict (1 = greedy)

    def validate(self) -> None:
        super().validate()
        _between("n_mels", self.n_mels, 8, 256)
        _between("subsample", self.subsample, 1, 8)
        _between("max_seconds", self.max_seconds, 0.1, 3600.0)
        _between("freq_masks", self.freq_masks, 0, 10)
        _between("freq_mask", self.freq_mask, 0, self.n_mels)
        _between("time_masks", self.time_masks, 0, 20)
        _between("time_mask", self.time_mask, 0, 10_000)
        _between("beam", self.beam, 1, 64)


def normalize(text: str, lowercase: bool = True, punctuation: bool = False) -> str:
    """The transcript the model learns: NFKC, curly apostrophes straightened, optionally
    lower-cased and without punctuation (anything but letters, digits, apostrophes and
    spaces becomes a space), runs of whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    if lowercase:
        text = text.lower()
    if not punctuation:
        text = "".join(c if c.isalnum() or c == "'" or c.isspace() else " " for c in text)
    return _SPACES.sub(" ", text).strip()


class Utterance(NamedTuple):
    member: str  # audio/<sha256> inside the bundle
    name: str  # the path as the manifest gave it
    transcript: str  # as written in the manifest; empty for predict bundles


def write_bundle(utterances: list[tuple[str, bytes, str]]) -> bytes:
    """A bundle of (name, audio bytes, transcript) triples; deterministic bytes."""
    lines, members = [], {}
    for name, audio, transcript in utterances:
        member = "audio/" + _sha256(audio)
        members[member] = audio
        for value, what in ((name, "name"), (transcript, "transcript")):
            if "\t" in value or "\n" in value or "\r" in value:
                raise SpecError(DATA_FIELD, f"{name}: the {what} has a tab or a line break")
        lines.append(f"{member}\t{name}\t{transcript}\n")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, MANIFEST, "".join(lines).encode("utf-8"))
        for member in sorted(members):
            _add(tar, member, members[member])
    return out.getvalue()


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def is_bundle(path: Path) -> bool:
    """Whether path is a bundle rnnq made (a tar file, such as the stored input a job file
    names) rather than a manifest or a folder."""
    return path.is_file() and tarfile.is_tarfile(path)


def read_bundle(raw: bytes, field: str = DATA_FIELD) -> tuple[list[Utterance], dict[str, bytes]]:
    """The utterances of a bundle and the audio bytes by member name."""
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            files = {}
            for info in tar.getmembers():
                if not info.isfile():
                    continue
                handle = tar.extractfile(info)
                assert handle is not None
                files[info.name] = handle.read()
    except tarfile.TarError as exc:
        raise SpecError(field, f"not an rnnq audio bundle: {exc}") from None
    if MANIFEST not in files:
        raise SpecError(field, f"not an rnnq audio bundle: no {MANIFEST}")
    utterances = []
    for number, line in enumerate(files.pop(MANIFEST).decode("utf-8").splitlines(), 1):
        parts = line.split("\t")
        if len(parts) != 3 or parts[0] not in files:
            raise SpecError(field, f"{MANIFEST} line {number} is malformed or names missing audio")
        utterances.append(Utterance(*parts))
    return utterances, files


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded random validation sample (manifests are often sorted by speaker) and the rest."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = max(1, int(n * val_fraction))
    return sorted(order[n_val:]), sorted(order[:n_val])


def check_transcripts(spec: TranscribeSpec, utterances: list[Utterance], field: str = DATA_FIELD) -> list[str]:
    """The normalised transcripts, or SpecError naming the first file whose transcript is empty."""
    texts = []
    for utt in utterances:
        text = normalize(utt.transcript, spec.lowercase, spec.punctuation)
        if not text:
            raise SpecError(field, f"{utt.name}: empty transcript" + (f" ({utt.transcript!r} once normalised)"
                                                                        if utt.transcript.strip() else ""))
        texts.append(text)
    return texts


def check_inputs(spec: TranscribeSpec, files: dict[str, bytes]) -> None:
    """Submit-time checks of a bundle: well-formed, no empty transcript, enough utterances to split."""
    utterances, _ = read_bundle(files["data"])
    check_transcripts(spec, utterances)
    if len(utterances) < 2:
        raise SpecError(DATA_FIELD, f"has {len(utterances)} utterance(s); at least 2 are needed (one held out)")


def check_request(fields: dict[str, Any], recogniser: TrainedModel,
                  find: Callable[[str, str], TrainedModel]) -> dict[str, Any]:
    """Submit-time check of a predict or eval request: its `lm` (shallow fusion) names a
    finished character language model that saw every character the recogniser writes.
    `find(job_or_name, field)` resolves it, naming the field when it cannot. Returns the
    fields with the LM given by its job id, as the worker loads it."""
    if fields.get("lm") is None:
        return fields
    lm = find(fields["lm"], "lm")
    if not train_spec_class(lm.spec.get("task", "lm")).GENERATES or lm.spec.get("tokenizer", "char") != "char":
        raise SpecError("lm", f"job {lm.id} is not a character language model")
    vocab = lm.result.get("vocab", "")
    missing = "".join(c for c in recogniser.result.get("alphabet", "") if c not in vocab)
    if missing:
        raise SpecError("lm", f"language model {lm.id} never saw {missing!r}, which the recogniser writes")
    return {**fields, "lm": lm.id}
