"""deploy/: Prometheus config and alerts pass promtool; the dashboards match their generator and the metrics contract."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import prometheus_tool

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE_UID = "rnnq-prometheus"

# The metrics contract (workers/metrics.py and the cluster exporter). A name that is
# not here is a typo or a metric nobody exports: its panel or alert would stay empty.
COUNTERS = ["rnnq_tokens_trained", "rnnq_tokens_generated", "rnnq_jobs_started", "rnnq_jobs_finished",
            "rnnq_jobs_given_up"]
HISTOGRAMS = ["rnnq_job_duration_seconds", "rnnq_job_queue_wait_seconds", "rnnq_train_step_duration_seconds"]
GAUGES = [
    "rnnq_worker_jobs_running",
    "rnnq_gpu_memory_allocated_bytes", "rnnq_gpu_memory_reserved_bytes", "rnnq_gpu_utilization_ratio",
    "rnnq_gpu_power_watts", "rnnq_gpu_temperature_celsius", "rnnq_gpu_memory_used_bytes",
    "rnnq_gpu_memory_total_bytes",
    "rnnq_redis_up", "rnnq_queue_messages", "rnnq_queue_unacked_messages", "rnnq_queue_oldest_job_age_seconds",
    "rnnq_jobs", "rnnq_workers_online", "rnnq_workers_busy",
    "rnnq_job_train_loss", "rnnq_job_validation_loss", "rnnq_job_learning_rate", "rnnq_job_grad_norm",
    "rnnq_job_tokens_per_second", "rnnq_job_progress_ratio", "rnnq_job_step", "rnnq_job_eta_seconds",
    "rnnq_job_elapsed_seconds", "rnnq_job_figure", "rnnq_sweep_trials",
]
EXPOSED = {
    *GAUGES,
    *(f"{name}_total" for name in COUNTERS),
    *(f"{name}{suffix}" for name in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")),
}
METRIC = re.compile(r"\brnnq_[a-z_]+")


# --- promtool ----------------------------------------------------------------------


def _promtool() -> str:
    return prometheus_tool("promtool")


@pytest.mark.parametrize("args", [
    ["check", "config", "prometheus.yml"],
    ["check", "rules", "alerts.yml"],
    ["test", "rules", "alerts_test.yml"],
], ids=lambda args: " ".join(args[:2]))
def test_promtool(args: list[str]) -> None:
    _run_promtool(args, PROMETHEUS)


def _run_promtool(args: list[str], cwd: Path) -> None:
    out = subprocess.run([_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, f"promtool {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"


def test_scrape_jobs_keep_their_names() -> None:
    # The alerts select on these job names and the e2e test rewrites targets by them.
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert [job["job_name"] for job in config["scrape_configs"]] == ["rnnq-workers", "rnnq-exporter"]
    assert config["rule_files"] == ["alerts.yml"]


def test_every_alert_has_severity_summary_and_tests() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    cases = [case for group in tests for case in group.get("alert_rule_test", [])]
    for rule in rules:
        name = rule["alert"]
        assert "for" in rule, name
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert {"summary", "description"} <= rule["annotations"].keys(), name
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no test where it fires"
        assert any(case["exp_alerts"] == [] for case in mine), f"{name}: no test where it stays quiet"


# --- Grafana -----------------------------------------------------------------------


def test_committed_dashboards_are_generated(tmp_path: Path) -> None:
    subprocess.run([sys.executable, GRAFANA / "generate.py", "--out", tmp_path], check=True, capture_output=True)
    generated = sorted(path.name for path in tmp_path.iterdir())
    assert generated == [path.name for path in DASHBOARDS]
    for path in DASHBOARDS:
        assert (tmp_path / path.name).read_text() == path.read_text(), (
            f"{path.name} is stale: run `python deploy/grafana/generate.py` and commit the result"
        )


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_panels(path: Path) -> None:
    board = _load(path)
    assert board["uid"] == path.stem
    panels = board["panels"]
    assert panels
    assert len({panel["id"] for panel in panels}) == len(panels), "panel ids must be unique"
    for panel in panels:
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys(), panel["title"]
        assert any(target["expr"].strip() for target in panel["targets"]), f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
            assert target["refId"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]


def _panel_exprs() -> list[str]:
    return [target["expr"] for path in DASHBOARDS for panel in _load(path)["panels"] for target in panel["targets"]]


def _dashboard_exprs() -> list[str]:
    """Panel queries and the variables' label_values(...) queries."""
    return _panel_exprs() + [var["query"] for path in DASHBOARDS for var in _load(path)["templating"]["list"]]


def test_dashboards_use_only_the_known_variables() -> None:
    # The e2e test substitutes exactly these before sending the queries to Prometheus.
    for expr in _dashboard_exprs():
        assert set(re.findall(r"\$\w+", expr)) <= {"$queue", "$job_id", "$sweep", "$__rate_interval"}, expr


def _alert_exprs() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"][0]["rules"]
    return [rule["expr"] for rule in rules]


def test_only_contract_metrics_are_queried() -> None:
    exprs = _dashboard_exprs() + _alert_exprs()
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used, "the metric regex found nothing"
    assert used <= EXPOSED, f"not in the metrics contract: {sorted(used - EXPOSED)}"


def test_panel_queries_parse(tmp_path: Path) -> None:
    # promtool parses recording rules: one per panel query, with the variables filled in.
    values = {"$queue": ".*", "$job_id": "j1", "$sweep": "s1", "$__rate_interval": "1m"}
    rules = []
    for i, expr in enumerate(_panel_exprs()):
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"rnnq:dashboard_query_{i}", "expr": expr})
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    _run_promtool(["check", "rules", "queries.yml"], tmp_path)


def test_job_dashboard_picks_a_sweep_and_draws_its_trials_validation_curves() -> None:
    from workers.sweep import trial_name

    board = _load(GRAFANA / "dashboards" / "rnnq-job.json")
    variables = {var["name"]: var for var in board["templating"]["list"]}
    assert variables["sweep"]["query"] == "label_values(rnnq_sweep_trials, sweep)"  # the exporter's sweeps
    assert not variables["sweep"]["multi"]
    curves = [(panel, target) for panel in board["panels"] for target in panel["targets"]
              if target["expr"].startswith("rnnq_job_validation_loss") and "$sweep" in target["expr"]]
    assert len(curves) == 1
    panel, target = curves[0]
    assert panel["type"] == "timeseries" and target["legendFormat"] == "{{job_name}}"  # one curve per trial
    # The panel selects the sweep's trials by job name: the names workers.sweep gives them, and no others.
    pattern = re.fullmatch(r'rnnq_job_validation_loss\{job_name=~"(.+)"\}', target["expr"])
    assert pattern is not None, target["expr"]
    selects = re.compile(pattern.group(1).replace("$sweep", "lr1"))
    assert selects.fullmatch(trial_name("lr1", 0)) and selects.fullmatch(trial_name("lr1", 15))
    assert not selects.fullmatch(trial_name("lr10", 3)) and not selects.fullmatch("lr1")
    states = [target["expr"] for panel in board["panels"] for target in panel["targets"]
              if target["expr"].startswith("rnnq_sweep_trials")]
    assert states == ['rnnq_sweep_trials{sweep="$sweep"}']
