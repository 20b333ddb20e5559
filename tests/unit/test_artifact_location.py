"""RNNQ_ARTIFACTS: a local directory or s3://bucket/prefix; any other URL is refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import rnnq
from workers import settings
from workers.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("RNNQ_REDIS_URL", "RNNQ_ARTIFACTS", "RNNQ_INPUT_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RNNQ_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("value, expected", [
    ("s3://rnnq/x", "s3://rnnq/x"),
    ("s3://rnnq/team/runs/", "s3://rnnq/team/runs"),
    ("s3://rnnq", "s3://rnnq"),
    ("S3://my-bucket.data/a_b/c-d", "s3://my-bucket.data/a_b/c-d"),
])
def test_s3_urls_are_kept_as_urls(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv("RNNQ_ARTIFACTS", value)
    assert settings.resolve().artifacts == expected
    assert settings.export(settings.resolve())["RNNQ_ARTIFACTS"] == expected


def test_paths_stay_local_directories(tmp_path: Path) -> None:
    assert settings.resolve(artifacts="rel/dir").artifacts == (tmp_path / "rel" / "dir").resolve()
    assert settings.resolve(artifacts=tmp_path / "p").artifacts == tmp_path / "p"
    assert settings.resolve().artifacts == (tmp_path / "home" / "artifacts").resolve()
    assert settings.resolve().input_cache == tmp_path / "home" / "cache" / "inputs"


@pytest.mark.parametrize("value", ["gs://bucket/x", "http://minio:9000/rnnq", "foo://a", "file:///tmp/x",
                                   "azure://c/x", "s3://", "s3://Bad_Bucket/x", "s3://ab", "s3://rnnq/../x",
                                   "s3://rnnq/a//b", "s3://rnnq/x?versionId=1"])
def test_other_urls_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RNNQ_ARTIFACTS", value)
    with pytest.raises(ConfigError, match="RNNQ_ARTIFACTS"):
        settings.resolve()


@pytest.mark.parametrize("args, env", [
    (["list"], {"RNNQ_ARTIFACTS": "gs://rnnq/x"}),
    (["--artifacts", "http://minio:9000/rnnq", "list"], {}),
])
def test_cli_refuses_in_one_line(args: list[str], env: dict[str, str], tmp_path: Path) -> None:
    result = CliRunner().invoke(rnnq, args, env=env)
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: RNNQ_ARTIFACTS") and "unsupported scheme" in lines[0]
    assert not list(tmp_path.glob("*:")), "no local directory named after the scheme"
