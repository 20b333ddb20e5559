"""Through the CLI, against a real Redis and real worker processes."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import Env, Worker, start_worker, stop
from tests.support import corpus_file, make_corpus

pytestmark = pytest.mark.integration

TINY = ["--hidden", "32", "--embed", "16", "--seq-len", "32", "--batch-size", "8", "--eval-every", "10"]


def _corpus(env: Env, chars: int = 6000) -> str:
    return str(corpus_file(env.tmp, chars))


def _train(env: Env, *extra: str) -> str:
    res = env.cli("train", _corpus(env), *TINY, "--max-steps", "30", "--json", *extra)
    assert res.exit_code == 0, res.output
    return str(json.loads(res.stdout)["job_id"])


def test_train_watch_result_generate(env: Env, worker: Worker) -> None:
    job_id = _train(env, "--name", "tiny")

    watched = env.cli("watch", job_id)
    assert watched.exit_code == 0, watched.output
    assert f"train job {job_id} succeeded" in watched.stdout

    res = json.loads(env.cli("result", job_id, "--json").stdout)
    assert res["state"] == "succeeded" and res["steps"] == 30
    assert 0 < res["val_loss"] < 10 and 0 < res["train_loss"] < 10
    assert Path(res["checkpoint"]).is_file()

    out = env.cli("generate", "tiny", "--prompt", "The ", "--prompt", "A", "--max-tokens", "40", "--seed", "1",
                  "--wait", "--json")
    assert out.exit_code == 0, out.output
    gen = json.loads(out.stdout)
    assert gen["state"] == "succeeded" and gen["source"] == job_id
    assert [len(t) for t in gen["texts"]] == [40, 40]

    copied = env.tmp / "out"
    assert env.cli("result", gen["job_id"], "--output", str(copied)).exit_code == 0
    assert json.loads((copied / "samples.json").read_text())["texts"] == gen["texts"]


def test_list_and_status_agree(env: Env, worker: Worker) -> None:
    job_id = _train(env, "--wait")
    listed = json.loads(env.cli("list", "--json").stdout)
    assert [j["job_id"] for j in listed] == [job_id]
    status = json.loads(env.cli("status", job_id, "--json").stdout)
    assert status["state"] == listed[0]["state"] == "succeeded"
    assert status["attempts"] == 1 and status["worker"] and status["finished_at"] >= status["started_at"]
    assert json.loads(env.cli("list", "--state", "failed", "--json").stdout) == []
    table = env.cli("list").stdout
    assert job_id in table and "succeeded" in table


def test_watch_shows_progress_lines(env: Env, worker: Worker) -> None:
    job_id = _train(env)
    out = env.cli("watch", job_id)
    assert out.exit_code == 0
    assert "step 10/30" in out.output and "val" in out.output and "tok/s" in out.output


def test_job_waits_in_queue_until_a_worker_starts(env: Env) -> None:
    queue = f"later-{uuid.uuid4().hex[:6]}"
    job_id = _train(env, "--queue", queue)
    assert json.loads(env.cli("status", job_id, "--json").stdout)["state"] == "queued"
    assert env.queued(queue) == 1
    # This worker is started the plain Celery way, which must work too.
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", queue, "-c", "1",
            "-n", f"plain-{queue}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    w = start_worker(env.vars, env.tmp / "late.log", argv=argv)
    try:
        assert env.cli("watch", job_id).exit_code == 0
    finally:
        stop(w.proc)
    assert env.queued(queue) == 0


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["{missing}"], "does not exist"),
        (["{empty}"], "is empty"),
        (["{short}"], "needs at least"),
        (["{ok}", "--arch", "transformer"], "--arch"),
        (["{ok}", "--lr", "-0.5"], "--lr"),
        (["{ok}", "--dropout", "1.5"], "--dropout"),
        (["{ok}", "--max-steps", "0"], "--max-steps"),
        (["{latin1}"], "not valid utf-8"),
    ],
)
def test_bad_input_is_refused_at_submit_and_nothing_is_queued(env: Env, args: list[str], expect: str) -> None:
    files = {
        "missing": env.tmp / "nope.txt",
        "empty": env.tmp / "empty.txt",
        "short": env.tmp / "short.txt",
        "ok": env.tmp / "ok.txt",
        "latin1": env.tmp / "latin1.txt",
    }
    files["empty"].write_text("")
    files["short"].write_text("hello")
    files["ok"].write_text(make_corpus(5000))
    files["latin1"].write_bytes("café ".encode("latin-1") * 200)
    before = env.queued("train")
    res = env.cli("train", *[a.format(**files) for a in args])
    assert res.exit_code != 0
    assert expect in res.output
    assert "Traceback" not in res.output
    assert env.job_count() == 0 and env.queued("train") == before


def test_encoding_flag_reads_other_encodings(env: Env, worker: Worker) -> None:
    path = env.tmp / "latin1.txt"
    path.write_bytes(make_corpus(5000).replace("a", "á").encode("latin-1"))
    res = env.cli("train", str(path), "--encoding", "latin-1", *TINY, "--max-steps", "5", "--wait")
    assert res.exit_code == 0, res.output


def test_unreachable_redis_is_one_line(env: Env) -> None:
    from tests.integration.conftest import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    res = env.cli("--redis-url", url, "list")
    assert res.exit_code == 1
    assert url in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = env.cli("--redis-url", url, "train", _corpus(env))
    assert res.exit_code == 1 and url in res.output


def test_unknown_job_says_so(env: Env) -> None:
    for command in ("status", "result", "watch"):
        res = env.cli(command, "0123456789ab")
        assert res.exit_code == 1 and "no job" in res.output


def test_generate_checks_the_source_and_prompt(env: Env, worker: Worker) -> None:
    job_id = _train(env, "--wait")
    res = env.cli("generate", job_id, "--prompt", "Zebra ✓")
    assert res.exit_code != 0 and "--prompt" in res.output and "✓" in res.output
    res = env.cli("generate", job_id, "--prompt", "The", "--top-p", "2")
    assert res.exit_code != 0 and "--top-p" in res.output
    # A record written before the characters moved into the result kept them in a field of its own.
    key = f"rnnq:job:{job_id}"
    result = json.loads(env.redis.hget(key, "result"))
    env.redis.hset(key, mapping={"result": json.dumps({k: v for k, v in result.items() if k != "vocab"}),
                                 "vocab": result["vocab"]})
    res = env.cli("generate", job_id, "--prompt", "Zebra ✓")
    assert res.exit_code != 0 and "✓" in res.output
    assert env.job_count() == 1


def test_a_job_that_fails_on_the_worker_does_not_stop_it(env: Env, worker: Worker) -> None:
    bad = _train(env, "--device", "cuda:7")  # no such GPU on this worker
    res = env.cli("watch", bad)
    assert res.exit_code == 1
    record = json.loads(env.cli("status", bad, "--json").stdout)
    assert record["state"] == "failed" and "cuda:7" in record["error"] and "Traceback" in record["traceback"]
    good = _train(env, "--wait")
    assert json.loads(env.cli("status", good, "--json").stdout)["state"] == "succeeded"
    assert worker.proc.poll() is None


def test_delete_removes_record_and_artifacts(env: Env, worker: Worker) -> None:
    job_id = _train(env, "--wait")
    watched = json.loads(env.cli("watch", job_id, "--json").stdout)
    checkpoint = Path(watched["checkpoint"])
    assert watched["state"] == "succeeded" and checkpoint.is_file()
    res = env.cli("delete", job_id)
    assert res.exit_code == 0 and f"deleted {job_id}" in res.stdout
    assert not checkpoint.exists()
    assert env.cli("status", job_id).exit_code == 1
    assert json.loads(env.cli("list", "--json").stdout) == []
    assert env.redis.exists(f"rnnq:events:{job_id}") == 0


def test_corrupt_checkpoint_fails_the_job_not_the_worker(env: Env, worker: Worker) -> None:
    job_id = _train(env, "--wait")
    checkpoint = Path(json.loads(env.cli("result", job_id, "--json").stdout)["checkpoint"])
    checkpoint.write_bytes(b"\x80\x04not a checkpoint")
    res = env.cli("generate", job_id, "--prompt", "The", "--wait", "--json")
    assert res.exit_code == 1
    assert "not an rnnq checkpoint" in json.loads(res.stdout)["error"]
    assert worker.proc.poll() is None


def test_corpus_over_the_size_limit_is_refused(env: Env) -> None:
    env.vars["RNNQ_MAX_CORPUS_BYTES"] = "1000"
    res = env.cli("train", _corpus(env, 5000))
    assert res.exit_code != 0 and "over the limit of 1000" in res.output and "RNNQ_MAX_CORPUS_BYTES" in res.output
    assert env.job_count() == 0


def test_result_output_keeps_another_jobs_files_unless_forced(env: Env, worker: Worker) -> None:
    source = _train(env, "--wait")
    first, second = (json.loads(env.cli("generate", source, "--prompt", "A", "--max-tokens", "30", "--seed", seed,
                                        "--wait", "--json").stdout) for seed in ("1", "2"))
    assert first["texts"] != second["texts"]
    out = env.tmp / "results"
    assert env.cli("result", first["job_id"], "--output", str(out)).exit_code == 0
    kept = {p.name: p.read_bytes() for p in out.iterdir()}
    assert json.loads(kept["samples.json"])["texts"] == first["texts"]
    assert env.cli("result", first["job_id"], "--output", str(out)).exit_code == 0  # the same file again: no clash

    res = env.cli("result", second["job_id"], "--output", str(out))
    assert res.exit_code == 1 and res.output.strip().count("\n") == 0, res.output
    assert "samples.json" in res.output and "--force" in res.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == kept  # nothing of the second, no temporary folder

    assert env.cli("result", second["job_id"], "--output", str(out), "--force").exit_code == 0
    assert json.loads((out / "samples.json").read_text())["texts"] == second["texts"]
