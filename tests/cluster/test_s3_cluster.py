"""The cluster with no shared path: corpora, checkpoints and samples only through S3
(moto's server on the Redis host). A lost worker host resumes elsewhere from the
published checkpoint object; generate and `result --output` read through S3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cluster.harness import MODEL, CheckpointMonitor, Cluster, check
from tests.support import make_corpus

pytestmark = pytest.mark.cluster


def test_jobs_resume_and_sample_through_s3_only(s3_cluster: Cluster) -> None:
    c = s3_cluster
    corpus = c.base / "corpus.txt"
    corpus.write_text(make_corpus(30_000))
    expect: dict[str, str] = {}
    with CheckpointMonitor(c) as monitor:
        job = c.submit("train", str(corpus), *MODEL, "--time-budget", "10", "--max-steps", "1000000")
        expect[job] = "succeeded"
        host = c.wait_running(job, min_step=45)["host"]
        c.kill_host(host)
        c.wait_attempt(job, 2)
        c.start_worker(host)
        rec = c.wait_state(job, ("succeeded", "failed", "cancelled"))
        assert int(rec["resumed_from"]) >= 40, rec

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
