"""Imports flow rnn_tasks <- workers <- cli; the CLI and the worker parent never load torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_cli_does_not_import_torch() -> None:
    # Every command's module (the group imports each only when it runs).
    loaded = _modules_after("import click, cli.main\nctx = click.Context(cli.main.rnnq)\n"
                            "[cli.main.rnnq.get_command(ctx, n) for n in cli.main.rnnq.list_commands(ctx)]")
    assert "torch" not in loaded
    assert {"cli.submit", "cli.sweep", "cli.stack"} <= loaded  # sanity: the probe really imported the commands


def test_worker_parent_does_not_import_torch() -> None:
    # Celery imports the app and its tasks in the parent before forking; CUDA must stay
    # uninitialised there, so torch is imported only inside a job.
    assert "torch" not in _modules_after("import workers.app, workers.tasks")


def test_rnn_tasks_imports_no_queue_code() -> None:
    code = "\n".join(f"import rnn_tasks.{p.stem}" for p in sorted((ROOT / "rnn_tasks").glob("*.py")))
    loaded = _modules_after(code)
    assert "torch" in loaded
    assert not {"celery", "redis", "kombu", "prometheus_client", "optuna", "workers", "cli"} & {m.split(".")[0] for m in loaded}


def test_spec_module_is_stdlib_only() -> None:
    assert "torch" not in _modules_after("import rnn_tasks.spec")
