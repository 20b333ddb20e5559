"""Settings precedence, and artifact keys that cannot escape the artifact root."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers import settings
from workers.artifacts import ArtifactError, LocalArtifactStore, put_input


def test_flag_beats_environment_beats_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("RNNQ_REDIS_URL", "RNNQ_ARTIFACTS", "RNNQ_HOME", "RNNQ_LOCAL_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RNNQ_HOME", str(tmp_path))
    default = settings.resolve()
    assert default.local and default.redis_url == f"redis://127.0.0.1:{settings.DEFAULT_LOCAL_PORT}/0"
    assert default.artifacts == (tmp_path / "artifacts").resolve()

    monkeypatch.setenv("RNNQ_REDIS_URL", "redis://env:6379/1")
    monkeypatch.setenv("RNNQ_ARTIFACTS", str(tmp_path / "env-art"))
    from_env = settings.resolve()
    assert not from_env.local and from_env.redis_url == "redis://env:6379/1"
    assert from_env.artifacts == (tmp_path / "env-art").resolve()

    flagged = settings.resolve(redis_url="redis://flag:6379/2", artifacts=tmp_path / "flag-art")
    assert flagged.redis_url == "redis://flag:6379/2" and flagged.artifacts == (tmp_path / "flag-art").resolve()


def test_redact_hides_passwords() -> None:
    assert settings.redact("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert settings.redact("rediss://user:pw@host/0") == "rediss://user:***@host/0"
    assert settings.redact("redis://host:6379/0") == "redis://host:6379/0"


@pytest.mark.parametrize("key", ["../outside", "jobs/../../etc/passwd", "/etc/passwd", "jobs/a/../../..", "", "a//b",
                                 "jobs/.hidden/../x", "jobs/x\x00y"])
def test_keys_cannot_escape_the_root(tmp_path: Path, key: str) -> None:
    store = LocalArtifactStore(tmp_path / "root")
    with pytest.raises(ArtifactError):
        store.local_path(key)


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "jobs").mkdir(parents=True)
    (root / "jobs" / "link").symlink_to(tmp_path)
    with pytest.raises(ArtifactError, match="escapes"):
        LocalArtifactStore(root).local_path("jobs/link/secret")


def test_an_input_is_stored_once_by_content(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    first = put_input(store, b"hello world")
    assert put_input(store, b"hello world") == first
    assert put_input(store, b"other text") != first
    assert store.get_bytes(first) == b"hello world"
    assert len(list((tmp_path / "inputs").iterdir())) == 2
