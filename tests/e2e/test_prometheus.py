"""A real Prometheus scraping a real stack: Redis, a worker with its metrics port, the
cluster exporter. Every PromQL expression of the Grafana dashboards must return data,
and the loss curve of a training job must be in Prometheus, falling.

The Prometheus config is deploy/prometheus/prometheus.yml with loopback targets and a
1 s scrape interval, so the shipped file (and its alert rules) is what gets loaded.
Skipped only where there is no prometheus binary; CI sets RNNQ_REQUIRE_PROMETHEUS=1,
which turns the skip into a failure.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from cli.main import rnnq
from tests.conftest import prometheus_tool
from tests.integration.conftest import ROOT, free_port, start_exporter, start_redis, start_worker, stop, wait_for
from tests.support import make_corpus
from workers import sweep as sweeps
from workers.jobstore import FINAL_STATES, JobStore

pytestmark = pytest.mark.e2e

DEPLOY = ROOT / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
SCRAPE = "1s"
RATE_WINDOW = "20s"  # what $__rate_interval becomes: many 1 s scrapes


@dataclass
class Stack:
    env: dict[str, str]
    prometheus: str  # base URL
    worker_port: int
    exporter_port: int
    tmp: Path
    store: JobStore
    answers: dict[str, Any] = field(default_factory=dict)  # expression -> result, taken mid-run

    def cli(self, *args: str) -> Any:
        res = CliRunner().invoke(rnnq, list(args), env=self.env, catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res

    def query(self, expr: str, **params: str) -> list[dict[str, Any]]:
        path = "query_range" if "start" in params else "query"
        url = f"{self.prometheus}/api/v1/{path}?" + urllib.parse.urlencode({"query": expr, **params})
        with urllib.request.urlopen(url, timeout=10) as reply:
            body = json.loads(reply.read())
        assert body["status"] == "success", (expr, body)
        return list(body["data"]["result"])


def prometheus_config(tmp: Path, worker_port: int, exporter_port: int) -> Path:
    """deploy/prometheus/prometheus.yml, pointed at this test's processes."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {"rnnq-workers": worker_port, "rnnq-exporter": exporter_port}
    config["global"].update(scrape_interval=SCRAPE, evaluation_interval=SCRAPE)
    jobs = {sc["job_name"]: sc for sc in config["scrape_configs"]}
    assert set(targets) <= set(jobs), f"prometheus.yml must scrape {sorted(targets)}"
    for name, port in targets.items():
        sc = jobs[name]
        sc.pop("file_sd_configs", None)
        sc["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
        sc["scrape_interval"] = SCRAPE
    config["rule_files"] = [str(DEPLOY / "prometheus" / f) for f in config.get("rule_files", [])]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = prometheus_tool("prometheus")
    tmp = tmp_path_factory.mktemp("e2e")
    redis_proc, url = start_redis(tmp)
    env = {"RNNQ_REDIS_URL": url, "RNNQ_ARTIFACTS": str(tmp / "artifacts"), "RNNQ_HOME": str(tmp / "home")}
    worker_port, prom_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = [redis_proc]
    try:
        argv = [sys.executable, "-m", "cli.main", "worker", "--metrics-port", str(worker_port),
                "--metrics-addr", "127.0.0.1", "--name", "e2e"]
        procs.append(start_worker(env, tmp / "worker.log", argv=argv).proc)
        exporter, exporter_port = start_exporter(env)
        procs.append(exporter)
        config = prometheus_config(tmp, worker_port, exporter_port)
        log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        base = f"http://127.0.0.1:{prom_port}"
        wait_for(lambda: _http_ok(f"{base}/-/ready") or procs[-1].poll() is not None, 60, "prometheus")
        assert procs[-1].poll() is None, (tmp / "prometheus.log").read_text()
        yield Stack(env, base, worker_port, exporter_port, tmp, JobStore(url))
    finally:
        for proc in reversed(procs):
            stop(proc)


@pytest.fixture(scope="module")
def run(stack: Stack) -> str:
    """A short job and a sample from it (so every counter has moved), then a longer job,
    during which every dashboard expression is evaluated. Returns the long job's id."""
    corpus = stack.tmp / "corpus.txt"
    corpus.write_text(make_corpus(40_000))
    model = ["--hidden", "64", "--embed", "16", "--seq-len", "32", "--batch-size", "8", "--eval-every", "40"]
    stack.cli("train", str(corpus), *model, "--max-steps", "60", "--name", "warmup", "--wait")
    stack.cli("generate", "warmup", "--prompt", "The ", "--max-tokens", "50", "--wait")
    # The long job is a one-trial sweep's trial, so the sweep panels have a sweep to show.
    sweep = stack.tmp / "sweep.yaml"
    sweep.write_text(json.dumps({
        "base": {"data": str(corpus), "hidden": 64, "embed": 16, "seq_len": 32, "batch_size": 8, "eval_every": 40,
                 "patience": 1000},
        "space": {"seed": [0]}, "trials": 1, "budget": {"time_budget": 20}, "parallel": 1}))
    assert stack.cli("sweep", str(sweep), "--name", "e2e-long").stdout.strip() == "e2e-long"
    job_id = sweeps.trials(stack.store, "e2e-long")[0]
    selector = f'rnnq_job_train_loss{{job_id="{job_id}"}}'
    wait_for(lambda: len(_range(stack, selector)) >= 10, 120, "ten scrapes of the running job's loss")
    wait_for(lambda: bool(stack.query(f'rnnq_job_validation_loss{{job_id="{job_id}"}}')), 60,
             "a scrape after the running job's first evaluation")
    for expr in dashboard_expressions():
        stack.answers[expr] = stack.query(substitute(expr, job_id))
    stack.answers["in flight"] = stack.query('rnnq_queue_unacked_messages{queue="train"}')
    wait_for(lambda: stack.store.get(job_id).state in FINAL_STATES, 120, "the long job to end")
    assert stack.store.get(job_id).state == "succeeded"
    return str(job_id)


def _range(stack: Stack, expr: str) -> list[tuple[float, float]]:
    now = time.time()
    result = stack.query(expr, start=str(now - 600), end=str(now), step="1")
    return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []


def dashboard_expressions() -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str) and node["expr"].strip():
                found.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in DASHBOARDS:
        walk(json.loads(path.read_text()))
    return sorted(set(found))


def substitute(expr: str, job_id: str) -> str:
    values = {"job_id": job_id, "queue": ".*", "sweep": "e2e-long", "__rate_interval": RATE_WINDOW}
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


def test_dashboards_have_expressions() -> None:
    assert len(DASHBOARDS) == 2
    assert len(dashboard_expressions()) >= 15


def test_every_dashboard_expression_returns_series(stack: Stack, run: str) -> None:
    # GPU panels have nothing to show on a machine without a GPU (the metrics are absent
    # by design there); their queries must still be valid, which query() asserts.
    gpu = shutil.which("nvidia-smi") is not None
    # The job here is a language model, which reports no figure beside its loss: the
    # figure panels are covered by tests/integration/test_observe.py with a classifier.
    empty = [e for e, result in stack.answers.items()
             if not result and (gpu or "rnnq_gpu_" not in e) and "rnnq_job_figure" not in e]
    assert not empty, f"expressions that returned no series: {empty}"
    # The running job's message was delivered and not yet acknowledged (acks_late).
    assert float(stack.answers["in flight"][0]["value"][1]) == 1


def test_job_loss_went_down_and_its_series_ended_with_it(stack: Stack, run: str) -> None:
    points = _range(stack, f'rnnq_job_train_loss{{job_id="{run}"}}')
    assert len(points) >= 10
    # The series is the job's own loss: every scraped value is one the job reported.
    # (The first scrape can land after the steep part of the curve, so the fall is
    # judged on the job's reports, which begin half a second into training.)
    reported = [e["loss"] for _, e in stack.store.events(run) if "loss" in e]
    assert reported[-1] < reported[0] * 0.9, f"loss went from {reported[0]} to {reported[-1]}"
    strays = [v for _, v in points if not any(abs(v - r) <= 1e-6 * max(1.0, abs(r)) for r in reported)]
    assert not strays, f"scraped losses the job never reported: {strays[:5]}"
    record = stack.store.get(run)
    labels = stack.query(f'last_over_time(rnnq_job_train_loss{{job_id="{run}"}}[10m])')[0]["metric"]
    assert labels["job_name"] == "e2e-long-t0" and labels["queue"] == "train" and labels["worker"] == record.worker
    # Its series stops with the job: nothing for this job at the current instant.
    wait_for(lambda: not stack.query(f'rnnq_job_train_loss{{job_id="{run}"}}'), 30, "the job's series to go stale")


def test_worker_counters_match_the_job_store(stack: Stack, run: str) -> None:
    trained = sum(j.result["tokens"] for j in stack.store.list_jobs() if j.kind == "train" and j.result)
    wait_for(lambda: _value(stack, "sum(rnnq_tokens_trained_total)") == trained, 30,
             f"Prometheus to see all {trained} trained tokens")
    # A job's counters move as it ends, a moment after its record does: wait for a scrape.
    wait_for(lambda: _value(stack, 'sum(rnnq_jobs_finished_total{state="succeeded"})') == 3, 30,
             "Prometheus to see three succeeded jobs")
    assert _value(stack, 'sum(rnnq_jobs_finished_total{state="failed"})') == 0
    assert _value(stack, "sum(rnnq_tokens_generated_total)") == 50
    assert _value(stack, 'up{job="rnnq-workers"}') == 1 and _value(stack, 'up{job="rnnq-exporter"}') == 1


def test_alert_rules_are_loaded_and_healthy(stack: Stack, run: str) -> None:
    with urllib.request.urlopen(f"{stack.prometheus}/api/v1/rules", timeout=10) as reply:
        groups = json.loads(reply.read())["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) >= 8
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    firing = [r["name"] for r in rules if r["state"] == "firing"]
    assert not firing, f"alerts firing on a healthy stack: {firing}"


@pytest.mark.parametrize("which", ["worker", "exporter"])
def test_endpoints_pass_promtool_check_metrics(stack: Stack, run: str, which: str) -> None:
    promtool = prometheus_tool("promtool")
    port = stack.worker_port if which == "worker" else stack.exporter_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read()
    check = subprocess.run([promtool, "check", "metrics"], check=False, input=text, capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def _value(stack: Stack, expr: str) -> float:
    result = stack.query(expr)
    return float(result[0]["value"][1]) if result else float("nan")
