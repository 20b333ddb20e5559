"""`rnnq train` shows and takes the options of the kind being trained, with its defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import rnnq


def _help(*args: str) -> str:
    """The options part of `rnnq train ... --help`."""
    result = CliRunner().invoke(rnnq, ["train", *args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output.split("Options:", 1)[1]


def test_each_kind_lists_only_its_options() -> None:
    lm, forecast, translate = _help(), _help("--task", "forecast"), _help("--task=translate")
    assert "--seq-len" in lm and "--tie-weights" in lm and "--horizon" not in lm and "--text-column" not in lm
    assert "--horizon" in forecast and "--target-column" in forecast
    assert "--seq-len" not in forecast and "--target-file" not in forecast and "--source" not in forecast
    assert "--target-file" in translate and "--source" in translate and "--target-column" not in translate


def test_help_shows_the_kinds_own_defaults() -> None:
    def line(text: str, flag: str) -> str:
        start = text.index(flag)
        return " ".join(text[start:text.index("\n  -", start)].split())

    assert "[default: 512]" in line(_help(), "--hidden")  # the language model's
    assert "[default: 64]" in line(_help("--task", "forecast"), "--hidden")  # a forecaster's


def test_the_job_files_task_picks_the_options(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("task: classify\ndata: reviews.csv\n")
    assert "--label-column" in _help("-f", str(job))


@pytest.mark.parametrize("args, says", [
    (["--task", "lm", "--horizon", "3"], "--horizon does not apply to --task lm (it is for forecast)"),
    (["--task", "forecast", "--target-file", "x"], "--target-file does not apply to --task forecast"),
    (["--task", "classify", "--no-such-flag"], "No such option"),
    (["--task", "lm", "--init-from", "my-lm"], "--init-from does not apply to --task lm (it is for classify, translate)"),
    (["--task", "forecast", "--init-from", "my-lm"], "--init-from does not apply to --task forecast"),
])
def test_an_option_of_another_kind_is_refused_in_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    result = CliRunner().invoke(rnnq, ["train", str(tmp_path / "data.csv"), *args],
                                env={"RNNQ_REDIS_URL": "redis://127.0.0.1:1/0", "RNNQ_HOME": str(tmp_path)})
    assert result.exit_code == 2 and says in result.output
