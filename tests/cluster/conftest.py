"""The multi-host cluster (tests/cluster/harness.py), one per module.

It needs root and `ip`; elsewhere the tests skip, except where RNNQ_REQUIRE_CLUSTER=1
(set by .ci/run) makes that a failure, as with the Prometheus tests.
RNNQ_CLUSTER_DIR=/tmp/x keeps the hosts' logs and data there for a post-mortem.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster, available


def _cluster(tmp_path_factory: pytest.TempPathFactory, name: str, s3: bool) -> Iterator[Cluster]:
    why = available()
    if why is not None:
        if os.environ.get("RNNQ_REQUIRE_CLUSTER") == "1":
            pytest.fail(f"RNNQ_REQUIRE_CLUSTER=1 but the cluster harness {why}")
        pytest.skip(f"the cluster harness {why}")
    keep = os.environ.get("RNNQ_CLUSTER_DIR")
    c = Cluster(Path(keep) / name if keep else Path(tmp_path_factory.mktemp(name)), s3=s3)
    c.base.mkdir(parents=True, exist_ok=True)
    try:
        c.build()
        yield c
    finally:
        c.destroy()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Artifacts on a directory shared by path, as an NFS mount would be."""
    yield from _cluster(tmp_path_factory, "cluster", s3=False)


@pytest.fixture(scope="module")
def s3_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Artifacts on an S3 server (moto) on the Redis host; no shared path."""
    yield from _cluster(tmp_path_factory, "s3cluster", s3=True)


@pytest.fixture
def corpus_file(cluster: Cluster) -> Path:
    from tests.support import make_corpus

    path = cluster.base / "corpus.txt"
    if not path.exists():
        path.write_text(make_corpus(30_000))
    return path
