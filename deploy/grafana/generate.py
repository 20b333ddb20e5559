"""Write the Grafana dashboards in dashboards/ from the panel lists below.

    python deploy/grafana/generate.py            # rewrites deploy/grafana/dashboards/*.json
    python deploy/grafana/generate.py --out DIR  # somewhere else (the tests compare the two)

The JSON is generated so that a panel is one line here, not sixty there; commit both.
Grafana provisions the files read-only, so edits made in the UI must be copied back
here. Expressions use only $queue, $job_id, $sweep and $__rate_interval.
Stdlib only: it runs anywhere Python does, no grafanalib to install.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "rnnq-prometheus"}  # provisioning/datasources/prometheus.yml
OUT = Path(__file__).resolve().parent / "dashboards"
GRID_WIDTH = 24  # Grafana's grid is 24 columns wide
Q = 'queue=~"$queue"'
JOB = '{job_id="$job_id"}'
SWEEP_TRIALS = '{job_name=~"$sweep-t[0-9]+"}'  # a sweep's trial jobs are named <sweep>-t<number>
GPU = "{{worker}} gpu {{gpu}}"


@dataclass(frozen=True)
class Panel:
    """One panel: (expr, legend) pairs drawn on one chart or stat."""

    title: str
    targets: tuple[tuple[str, str], ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    width: int = 12
    height: int = 8
    description: str = ""


def quantile(q: float, metric: str, by: str, window: str = "$__rate_interval") -> str:
    """The q-quantile of a histogram, per `by` label(s), over the queues picked in $queue."""
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{Q}}}[{window}])))"


def rate_by(metric: str, by: str, selector: str = Q) -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}[$__rate_interval]))"


def finished(selector: str) -> str:
    """Jobs that finished in the last 30 minutes, per queue (the window RnnqJobFailureRateHigh uses)."""
    return f"sum by (queue) (increase(rnnq_jobs_finished_total{{{selector}}}[30m]))"


def cluster_panels() -> list[Panel]:
    # Jobs start and end minutes to hours apart, so a per-scrape rate of their histograms
    # is empty most of the time: job-level quantiles and the failure share use 1h / 30m.
    failed_share = finished('state="failed", ' + Q) + " / " + finished(Q)
    return [
        Panel("Queue backlog", (
            (f"rnnq_queue_messages{{{Q}}}", "{{queue}} ready"),
            (f"rnnq_queue_unacked_messages{{{Q}}}", "{{queue}} unacked"),
        ), description="Ready: waiting for a worker. Unacked: delivered to a worker, not yet acknowledged."),
        Panel("Oldest queued job", ((f"rnnq_queue_oldest_job_age_seconds{{{Q}}}", "{{queue}}"),), unit="s",
              description="Age of the oldest job still waiting; RnnqQueueBacklogStale fires past 30 minutes."),
        Panel("Queue wait (1h)", (
            (quantile(0.5, "rnnq_job_queue_wait_seconds", "queue", "1h"), "{{queue}} p50"),
            (quantile(0.95, "rnnq_job_queue_wait_seconds", "queue", "1h"), "{{queue}} p95"),
        ), unit="s", description="Submission to first start, jobs started in the last hour."),
        Panel("Jobs by state", ((f"sum by (state) (rnnq_jobs{{{Q}}})", "{{state}}"),),
              description="Job records in the job store, by state."),
        Panel("Workers", (("rnnq_workers_online", "online"), ("rnnq_workers_busy", "busy")), kind="stat", width=6,
              description="Worker nodes online, and those running at least one job."),
        Panel("Jobs running per worker", ((f"sum by (worker) (rnnq_worker_jobs_running{{{Q}}})", "{{worker}}"),),
              width=6),
        Panel("Tokens/s per worker", (
            (rate_by("rnnq_tokens_trained_total", "worker"), "{{worker}} trained"),
            (rate_by("rnnq_tokens_generated_total", "worker"), "{{worker}} generated"),
        )),
        Panel("Failed share of finished jobs (30m)", ((failed_share, "{{queue}}"),), unit="percentunit", width=8,
              description="The ratio RnnqJobFailureRateHigh watches (it also needs 4 finished jobs)."),
        Panel("Training step time p95", ((quantile(0.95, "rnnq_train_step_duration_seconds", "worker"), "{{worker}}"),),
              unit="s", width=8),
        Panel("Job duration p95 (1h)", (
            (quantile(0.95, "rnnq_job_duration_seconds", "queue, state", "1h"), "{{queue}} {{state}}"),
        ), unit="s", width=8, description="Run time of one attempt, attempts that ended in the last hour."),
        Panel("GPU utilisation", (("rnnq_gpu_utilization_ratio", GPU),), unit="percentunit",
              description="NVML busy time; GPU nodes only."),
        Panel("GPU memory", (
            ("rnnq_gpu_memory_allocated_bytes", GPU + " allocated"),
            ("rnnq_gpu_memory_reserved_bytes", GPU + " reserved"),
            ("rnnq_gpu_memory_used_bytes", GPU + " used"),
            ("rnnq_gpu_memory_total_bytes", GPU + " total"),
        ), unit="bytes", description="Allocated and reserved: torch, this worker's jobs. Used and total: NVML, "
                                     "every process on the GPU."),
        Panel("GPU power", (("rnnq_gpu_power_watts", GPU),), unit="watt"),
        Panel("GPU temperature", (("rnnq_gpu_temperature_celsius", GPU),), unit="celsius"),
    ]


def job_panels() -> list[Panel]:
    def stat(title: str, metric: str, unit: str) -> Panel:
        return Panel(title, ((metric + JOB, title),), unit=unit, kind="stat", width=6, height=4)

    return [
        stat("Progress", "rnnq_job_progress_ratio", "percentunit"),
        stat("Step", "rnnq_job_step", "short"),
        stat("ETA", "rnnq_job_eta_seconds", "s"),
        stat("Elapsed", "rnnq_job_elapsed_seconds", "s"),
        Panel("Loss", (("rnnq_job_train_loss" + JOB, "train"), ("rnnq_job_validation_loss" + JOB, "validation")),
              width=24, description="Training loss averaged per report; validation loss at the latest evaluation."),
        Panel("Learning rate", (("rnnq_job_learning_rate" + JOB, "lr"),), width=8),
        Panel("Gradient norm", (("rnnq_job_grad_norm" + JOB, "grad norm"),), width=8,
              description="Before clipping; spikes come before a diverging loss."),
        Panel("Tokens/s", (("rnnq_job_tokens_per_second" + JOB, "tokens/s"),), width=8),
        Panel("Held-out figures", (("rnnq_job_figure" + JOB, "{{figure}}"),), width=24,
              description="The task's other figures at the latest evaluation: accuracy and macro F1 (classify), "
                          "RMSE and MAE (forecast), BLEU and chrF (translate), CER and WER (transcribe)."),
        Panel("Sweep: validation loss of its running trials", (("rnnq_job_validation_loss" + SWEEP_TRIALS,
                                                                "{{job_name}}"),), width=16,
              description="Pick a sweep: each running trial's validation loss at its latest evaluation."),
        Panel("Sweep: trials by state", (('rnnq_sweep_trials{sweep="$sweep"}', "{{state}}"),), width=8,
              description="pruned: stopped early by the sweep's pruner (state succeeded, stopped_by pruned)."),
        Panel("Sweep: held-out figures of its running trials", (("rnnq_job_figure" + SWEEP_TRIALS,
                                                                 "{{job_name}} {{figure}}"),), width=24,
              description="Pick a sweep: each running trial's other figures (its objective among them, when the "
                          "objective is not val_loss) at its latest evaluation."),
    ]


def layout(panels: list[Panel]) -> list[dict[str, int]]:
    """Left to right, wrapping at the grid's width; a row is as tall as its tallest panel."""
    positions, x, y, row_height = [], 0, 0, 0
    for p in panels:
        if x + p.width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        positions.append({"h": p.height, "w": p.width, "x": x, "y": y})
        x, row_height = x + p.width, max(row_height, p.height)
    return positions


def target(expr: str, legend: str, index: int) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + index)}


def defaults(unit: str) -> dict[str, Any]:
    # Ratios are drawn on a fixed 0-100% axis so an idle GPU does not look busy.
    return {"unit": unit, "min": 0, "max": 1} if unit == "percentunit" else {"unit": unit}


def options(kind: str) -> dict[str, Any]:
    if kind == "stat":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value", "graphMode": "area", "justifyMode": "auto", "orientation": "auto",
                "textMode": "auto"}
    return {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"}}


def render(panel: Panel, panel_id: int, pos: dict[str, int]) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": pos,
        "fieldConfig": {"defaults": defaults(panel.unit), "overrides": []},
        "options": options(panel.kind),
        "targets": [target(expr, legend, i) for i, (expr, legend) in enumerate(panel.targets)],
    }


def variable(name: str, query: str, multi: bool) -> dict[str, Any]:
    """A Prometheus query variable, refreshed when the time range changes."""
    var = {"type": "query", "name": name, "label": name, "datasource": DATASOURCE, "definition": query,
           "query": query, "refresh": 2, "sort": 1, "multi": multi, "includeAll": multi, "hide": 0,
           "regex": "", "options": [], "current": {}}
    if multi:
        var["allValue"] = ".*"  # a regex for =~, not Grafana's default list of every value
    return var


def dashboard(uid: str, title: str, panels: list[Panel], variables: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": None,
        "uid": uid,
        "title": title,
        "tags": ["rnnq"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,  # shared crosshair
        "refresh": "10s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": variables},
        "panels": [render(p, i, pos) for i, (p, pos) in enumerate(zip(panels, layout(panels)), start=1)],
    }


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard."""
    return {
        "rnnq-cluster.json": dashboard("rnnq-cluster", "rnnq cluster", cluster_panels(),
                                       [variable("queue", "label_values(rnnq_queue_messages, queue)", multi=True)]),
        "rnnq-job.json": dashboard("rnnq-job", "rnnq job", job_panels(),
                                   [variable("job_id", "label_values(rnnq_job_step, job_id)", multi=False),
                                    variable("sweep", "label_values(rnnq_sweep_trials, sweep)", multi=False)]),
    }


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, board in dashboards().items():
        path = out / name
        path.write_text(json.dumps(board, indent=2) + "\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"Directory to write to [default: {OUT}].")
    for path in write(parser.parse_args(argv).out):
        print(path)


if __name__ == "__main__":
    main()
