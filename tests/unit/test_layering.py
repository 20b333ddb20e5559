"""Imports flow rnn_tasks <- workers <- cli; the CLI and the worker parent never load torch.

Two checks over every .py file of each package, subpackages included: a static one
that reads each file's import statements (those inside functions too, which an import
probe never runs), and probes that import every module in a fresh interpreter and
look at what was loaded.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUEUE_CODE = {"celery", "redis", "kombu", "prometheus_client", "optuna", "workers", "cli"}
# What each package must never import, at module level or inside a function.
FORBIDDEN = {
    "rnn_tasks": QUEUE_CODE,
    "workers": {"cli"},
    "cli": {"torch"},
}


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_roots(path: Path) -> set[str]:
    """The top-level names of every absolute import in the file."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def _import_all(package: str) -> str:
    return "\n".join(f"import {_module(p)}" for p in _files(package))


def _roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_the_walk_reaches_subpackages() -> None:
    found = {_module(p) for p in _files("rnn_tasks")}
    assert {"rnn_tasks.loop", "rnn_tasks.forecast.task", "rnn_tasks.translate.model"} <= found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_file_imports_against_the_flow(package: str) -> None:
    wrong = {str(p.relative_to(ROOT)): sorted(_imported_roots(p) & FORBIDDEN[package]) for p in _files(package)}
    assert {path: names for path, names in wrong.items() if names} == {}


def test_cli_does_not_import_torch() -> None:
    loaded = _modules_after(_import_all("cli"))
    assert "torch" not in loaded
    assert {"cli.main", "cli.submit", "cli.sweep", "cli.stack", "click"} <= loaded  # sanity: the probe really imported the CLI


def test_worker_parent_does_not_import_torch() -> None:
    # Celery imports the app and its tasks in the parent before forking; CUDA must stay
    # uninitialised there, so torch is imported only inside a job.
    assert "torch" not in _modules_after("import workers.app, workers.tasks")


def test_workers_import_no_cli() -> None:
    assert "cli" not in _roots(_modules_after(_import_all("workers")))


def test_rnn_tasks_imports_no_queue_code() -> None:
    loaded = _modules_after(_import_all("rnn_tasks"))
    assert "torch" in loaded and "rnn_tasks.forecast.task" in loaded
    # redis itself is let through here: sacrebleu imports portalocker, which loads redis
    # when it is installed. No rnn_tasks file imports it (the static test above).
    assert not (QUEUE_CODE - {"redis"}) & _roots(loaded)


@pytest.mark.parametrize("path", [p.relative_to(ROOT) for p in _files("rnn_tasks") if p.name == "spec.py"], ids=str)
def test_spec_modules_are_stdlib_only(path: Path) -> None:
    # The CLI builds and checks specs without torch (or any other third-party package).
    loaded = _modules_after(f"import {_module(ROOT / path)}")
    third_party = {r for r in _roots(loaded) - set(sys.stdlib_module_names) - {"rnn_tasks", "__main__"}
                   if not r.startswith("_")}  # _distutils_hack, the editable-install finder
    assert third_party == set()
