"""Submit-time refusals and I/O failures reach the user as one line, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import Env, Worker
from tests.support import corpus_file

pytestmark = pytest.mark.integration

TINY = ["--hidden", "32", "--embed", "16", "--seq-len", "32", "--batch-size", "8", "--eval-every", "10"]


def _corpus(env: Env, chars: int = 6000) -> str:
    return str(corpus_file(env.tmp, chars))


def _one_line_error(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in output, output
    return lines[0]


def test_word_window_is_counted_in_tokens_at_submit(env: Env) -> None:
    corpus = _corpus(env, 5000)  # ~1400 words: 2000 characters fit, 2000 words do not
    res = env.cli("train", corpus, "--tokenizer", "word", "--seq-len", "2000")
    assert res.exit_code != 0 and "Invalid value for --seq-len" in res.output and "word tokens" in res.output
    assert "Traceback" not in res.output and env.job_count() == 0
    res = env.cli("train", corpus, "--tokenizer", "bpe", "--seq-len", "2000")
    assert res.exit_code != 0 and "Invalid value for --seq-len" in res.output and "bpe tokens" in res.output
    assert env.job_count() == 0


def test_corpus_over_the_worker_memory_is_refused_with_its_size(env: Env) -> None:
    env.vars["RNNQ_WORKER_MEMORY_BYTES"] = str(10_000)
    res = env.cli("train", _corpus(env, 6000))
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "RNNQ_WORKER_MEMORY_BYTES" in res.output and "corpus.txt is 6,000 bytes" in res.output
    assert env.job_count() == 0


def test_upload_failure_is_one_line_and_queues_nothing(env: Env) -> None:
    blocker = env.tmp / "not-a-directory"
    blocker.write_text("a file where the artifact root should be")
    env.vars["RNNQ_ARTIFACTS"] = str(blocker / "artifacts")
    before = env.queued("train")
    res = env.cli("train", _corpus(env), *TINY)
    assert res.exit_code == 1
    assert "could not store the input files in the artifact store" in _one_line_error(res.output)
    assert env.job_count() == 0 and env.queued("train") == before


def test_artifact_errors_in_result_are_one_line(env: Env, worker: Worker, tmp_path: Path) -> None:
    res = env.cli("train", _corpus(env), *TINY, "--max-steps", "10", "--json", "--wait")
    assert res.exit_code == 0, res.output
    job_id = json.loads(res.stdout.splitlines()[0])["job_id"]
    # --output under a file: creating the folder fails with an OSError
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    res = env.cli("result", job_id, "--output", str(not_a_dir / "out"))
    assert res.exit_code == 1 and "could not copy the artifacts" in _one_line_error(res.output)
    # the job's folder swapped for a link out of the artifact root: the store refuses the key
    folder = Path(env.vars["RNNQ_ARTIFACTS"]) / "jobs" / job_id
    outside = tmp_path / "outside"
    folder.rename(outside)
    folder.symlink_to(outside, target_is_directory=True)
    res = env.cli("result", job_id)
    assert res.exit_code == 1 and "escapes the artifact root" in _one_line_error(res.output)
