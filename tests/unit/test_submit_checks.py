"""Submit-time checks on input files, without servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnn_tasks.lm.spec import LMSpec
from tests.support import make_corpus
from workers import submit
from workers.errors import InvalidJob
from workers.settings import CORPUS_MEMORY_PER_CHAR


def test_an_unreadable_file_is_an_invalid_job_not_an_oserror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("some text")

    def refuse(self: Path) -> bytes:  # tests run as root, where chmod 000 does not stop a read
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(InvalidJob) as err:
        submit.read_input(path, 1 << 20, "--data")
    assert err.value.field == "--data" and "cannot read" in str(err.value) and "Permission denied" in str(err.value)


def test_corpus_memory_counts_the_width_of_the_text() -> None:
    ascii_text = "a" * 1_000_000
    assert 3_000_000 <= submit.corpus_memory(ascii_text) <= 3_000_100
    assert CORPUS_MEMORY_PER_CHAR == 3.0
    wide = "a" * 999_999 + "🐶"  # one character beyond U+FFFF: the str is 4 bytes a character
    assert submit.corpus_memory(wide) >= 6_000_000


def test_check_inputs_refuses_a_corpus_the_worker_memory_cannot_hold(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text(make_corpus(50_000))
    spec = LMSpec.from_dict({"data": "x"})
    assert submit.check_inputs(spec, {"data": path}, worker_memory=1 << 20)["data"] == path.read_bytes()
    with pytest.raises(InvalidJob) as err:
        submit.check_inputs(spec, {"data": path}, worker_memory=100_000)
    assert err.value.field == "DATA" and "RNNQ_WORKER_MEMORY_BYTES" in str(err.value)
    assert "is 50,000 bytes" in str(err.value) and "about 150,0" in str(err.value) and "of 100,000 bytes" in str(err.value)
