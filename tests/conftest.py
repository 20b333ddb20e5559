"""Shared fixtures; the data generators live in tests/support.py (tests never need ../shared)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support import make_corpus

__all__ = ["corpus", "make_corpus", "prometheus_tool"]  # make_corpus: older imports keep working


def prometheus_tool(name: str) -> str:
    """The path of `prometheus` or `promtool`. Skipped where the Debian package is not
    installed, unless RNNQ_REQUIRE_PROMETHEUS=1 (set by .ci/run) makes that a failure."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("RNNQ_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(f"RNNQ_REQUIRE_PROMETHEUS=1 but {name} is not on PATH (apt-get install prometheus)")
        pytest.skip(f"{name} is not on PATH (apt-get install prometheus)")
    return path


@pytest.fixture
def corpus() -> str:
    return make_corpus(20_000)
