"""Errors at the edge: every user error is one line and a non-zero exit, never a
traceback; the pure layers name fields and the CLI names its own flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from cli.errors import flag_for
from cli.main import rnnq

ROOT = Path(__file__).resolve().parents[2]


def _rnnq(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """rnnq in a fresh interpreter: settings read at import time would fail there, not in a CliRunner."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RNNQ_")}
    variables = {**base, "RNNQ_HOME": str(tmp_path), "RNNQ_REDIS_URL": "redis://127.0.0.1:1/0",
                 "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], check=False, cwd=ROOT, env=variables,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name, value, says", [
    ("RNNQ_LEASE_SECONDS", "abc", "'abc' is not a number"),
    ("RNNQ_LEASE_SECONDS", "-3", "must be a positive number"),
    ("RNNQ_REAP_SECONDS", "nan", "must be a positive number"),
    ("RNNQ_MAX_CORPUS_BYTES", "1e3", "'1e3' is not a whole number"),
    ("RNNQ_VISIBILITY_TIMEOUT", "0", "must be at least 1"),
    ("RNNQ_WORKER_PROCESSES", "0", "must be at least 1"),
    ("RNNQ_METRICS_PORT", "99999", "not a TCP port"),
    ("RNNQ_LOCAL_PORT", "http", "not a whole number"),
])
@pytest.mark.parametrize("command", [["list"], ["status", "0123456789ab"]])
def test_bad_environment_variable_is_one_line_naming_it(tmp_path: Path, name: str, value: str, says: str,
                                                        command: list[str]) -> None:
    result = _rnnq(command, {name: value}, tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {name}: ")
    assert says in lines[0]


def test_spec_field_errors_name_the_flag(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world\n" * 200)
    result = _rnnq(["train", str(corpus), "--seq-len", "0"], {}, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Invalid value for --seq-len" in result.stderr


@pytest.mark.parametrize("field, flag", [
    ("seq_len", "--seq-len"), ("data", "DATA"), ("target_data", "--target-file"), ("prompts[1]", "--prompt #2"),
    ("--input", "--input"), ("RNNQ_LEASE_SECONDS", "RNNQ_LEASE_SECONDS"),
])
def test_fields_map_to_train_flags(field: str, flag: str) -> None:
    assert flag_for(field, rnnq.get_command(click.Context(rnnq), "train")) == flag


def test_an_input_named_data_is_the_eval_option() -> None:
    eval_command = rnnq.get_command(click.Context(rnnq), "eval")
    assert isinstance(eval_command, click.Command)
    assert flag_for("data", eval_command) == "--data"


@pytest.mark.parametrize("args, says", [
    (["train", "{corpus}", "--arch", "transformer"], "Invalid value for '--arch': 'transformer' is not one of"),
    (["train", "{corpus}", "--hidden"], "Option '--hidden' requires an argument"),
    (["train", "{corpus}", "--task", "nope"], "Invalid value for '--task'"),
    (["train", "{corpus}", "--name", "../etc"], "Invalid value for '--name'"),
    (["generate", "0123456789ab"], "Missing option '--prompt'. (see 'rnnq generate --help')"),
    (["predict", "0123456789ab", "--data", "x"], "No such option '--data'"),
    (["sweep", "status"], "Missing argument 'NAME'. (see 'rnnq sweep status --help')"),
    (["nope"], "No such command 'nope'. (see 'rnnq --help')"),
    (["--bogus", "list"], "No such option '--bogus'"),
    (["train", "{corpus}", "-f", "{binary}"], "Invalid value for -f: {binary} is not UTF-8 text"),
])
def test_usage_errors_are_one_line_too(tmp_path: Path, args: list[str], says: str) -> None:
    # Click prints a usage block before its own parse errors; rnnq's are one line, and so are Click's.
    corpus, binary = tmp_path / "corpus.txt", tmp_path / "job.yaml"
    corpus.write_text("hello world\n" * 200)
    binary.write_bytes(bytes(range(256)))
    paths = {"corpus": corpus, "binary": binary}
    result = _rnnq([a.format(**paths) for a in args], {}, tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert says.format(**paths) in lines[0]


def test_no_arguments_still_print_the_help(tmp_path: Path) -> None:
    result = _rnnq([], {}, tmp_path)
    assert "Commands:" in result.stdout + result.stderr
