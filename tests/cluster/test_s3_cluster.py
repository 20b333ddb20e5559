"""The cluster with no shared path: corpora, checkpoints and samples only through S3
(moto's server on the Redis host). A lost worker host resumes elsewhere from the
published checkpoint object, and a woken stale copy publishes nothing."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.cluster.harness import MODEL, CheckpointMonitor, Cluster, check, wait_for
from tests.conftest import make_corpus

pytestmark = pytest.mark.cluster


def test_jobs_resume_and_sample_through_s3_only(s3_cluster: Cluster) -> None:
    c = s3_cluster
    corpus = c.base / "corpus.txt"
    corpus.write_text(make_corpus(30_000))
    expect: dict[str, str] = {}
    with CheckpointMonitor(c) as monitor:
        job = c.submit("train", str(corpus), *MODEL, "--max-steps", "500")
        expect[job] = "succeeded"
        host = c.wait_running(job, min_step=45)["host"]
        c.kill_host(host)
        c.wait_running(job, attempt=2)
        c.start_worker(host)
        rec = c.wait_state(job, ("succeeded", "failed", "cancelled"))
        assert int(rec["resumed_from"]) >= 40, rec

        paused = c.submit("train", str(corpus), *MODEL, "--max-steps", "500")
        expect[paused] = "succeeded"
        rec = c.wait_running(paused, min_step=45)
        pid, host = int(rec["pid"]), rec["host"]
        os.kill(pid, signal.SIGSTOP)
        try:
            before = c.wait_state(paused, ("succeeded",))
        finally:
            os.kill(pid, signal.SIGCONT)
        log = c.hosts[host].log
        assert log is not None
        wait_for(lambda: f"job {paused}: attempt 1 no longer owns the job" in log.read_text(errors="replace")
                 or f"job {paused}: another worker owns it now" in log.read_text(errors="replace"),
                 120, "the paused copy to give up")
        assert c.record(paused) == before

        res = c.cli("generate", job, "--prompt", "The ", "--max-tokens", "50", "--seed", "1", "--wait", "--json")
        assert res.returncode == 0, res.stderr
        assert len(json.loads(res.stdout)["texts"][0]) == 50
        out = c.base / "out"
        res = c.cli("result", job, "--output", str(out))
        assert res.returncode == 0, res.stderr
        assert any(p.suffix == ".safetensors" for p in Path(out).rglob("*"))
    # Nothing went through a shared path: the workers had none.
    assert not any(p.is_file() for p in c.artifacts.rglob("*"))
    assert c.artifact_files(f"jobs/{job}"), "the job's objects are in the bucket"
    report = check(c, expect, monitor=monitor)
    assert report.failures() == {}, json.dumps(report.failures(), indent=1)
