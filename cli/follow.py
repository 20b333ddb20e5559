"""Following a job: a live progress bar fed by the job's metric stream, then the result."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from cli.context import Context
from workers.jobstore import FINAL_STATES, Job, JobStore

_SCALE = 1000  # the bar tracks progress (0..1) in thousandths


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _stats(event: dict[str, Any], val: float | None) -> str:
    total = event.get("total_steps")
    steps = f"step {event['step']}" + (f"/{total}" if total else "")
    return f"{steps}  loss {_fmt(event.get('loss'))}  val {_fmt(val)}  {_fmt(event.get('tokens_per_s'), ',.0f')} tok/s"


def follow(store: JobStore, job_id: str, quiet: bool = False, poll: float = 1.0) -> Job:
    """Show progress until the job ends; returns its final record.

    On a terminal the bar redraws in place; elsewhere (logs, pipes) each validation
    result is printed as a line.
    """
    from rich.console import Console  # only where something is drawn: read commands stay light
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True, quiet=quiet)
    job = store.get(job_id)
    after, val = "0-0", None
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[stats]}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"{job.kind} {job_id} {job.state}", total=_SCALE, stats="")
        while True:
            for event_id, event in store.events(job_id, after, block_ms=int(poll * 1000)):
                after = event_id
                if event.get("val_loss") is not None:
                    val = event["val_loss"]
                    if not console.is_terminal:
                        console.print(_stats(event, val))
                bar.update(task, completed=int(event.get("progress", 0) * _SCALE), stats=_stats(event, val))
            job = store.get(job_id)
            bar.update(task, description=f"{job.kind} {job_id} {job.state}")
            if job.state in FINAL_STATES:
                if job.state == "succeeded":
                    bar.update(task, completed=_SCALE)
                break
    if job.state != "succeeded" and not quiet:
        console.print(f"job {job_id} {job.state}: {job.error or ''}".rstrip(": "))
    return job


def submitted(ctx: Context, job_id: str, wait: bool, as_json: bool, progress: bool = False) -> None:
    """What every submit command prints: the job id ({"job_id": ...} with --json); with
    --wait, follow the job, print its result and exit 0 only if it succeeded. With --wait
    --json, stdout is one line: the finished job's full record (record_dict), every kind alike.

    progress: draw the live bar (training); the id then goes to stdout before it, as
    without --wait. Otherwise the id goes to stderr and stdout holds only the result.
    """
    if not wait or (progress and not as_json):
        click.echo(json.dumps({"job_id": job_id}) if as_json else job_id)
        if not wait:
            return
    elif not as_json:
        click.echo(job_id, err=True)
    final = follow(ctx.store, job_id, quiet=as_json or not progress)
    if as_json:
        click.echo(json.dumps(record_dict(ctx, final)))
    else:
        print_result(ctx, final, as_json=False)
    exit_with(final)


def exit_with(job: Job) -> None:
    """Exit 0 only for a succeeded job."""
    if job.state != "succeeded":
        sys.exit(1)


def result_dict(ctx: Context, job: Job) -> dict[str, Any]:
    """What `result --json` prints: the summary plus absolute artifact paths."""
    out: dict[str, Any] = {"job_id": job.id, "kind": job.kind, "name": job.name, "state": job.state}
    out.update(job.result or {})
    if job.error:
        out["error"] = job.error
    for label, key in job.artifacts.items():
        out[label] = ctx.artifacts.location(key)
    return out


def record_dict(ctx: Context, job: Job) -> dict[str, Any]:
    """The job's full record: result_dict plus its spec, queue and timings."""
    out = {k: v for k, v in job.to_dict().items() if k not in ("id", "vocab", "result", "artifacts")}
    return {**out, **result_dict(ctx, job)}


# Held-out figures worth a line, in this order, when a job's result has them.
_FIGURES = ("bpc", "perplexity", "accuracy", "macro_f1", "baseline_accuracy", "baseline_macro_f1", "mae", "rmse",
            "baseline_mae", "baseline_rmse", "holt_winters_mae", "holt_winters_rmse", "skill", "skill_vs_holt_winters",
            "bleu", "chrf", "cer", "wer")


def print_result(ctx: Context, job: Job, as_json: bool) -> None:
    data = result_dict(ctx, job)
    if as_json:
        click.echo(json.dumps(data, indent=1))
        return
    click.echo(f"{job.kind} job {job.id} {job.state}" + (f": {job.error}" if job.error else ""))
    if job.state != "succeeded":
        return
    if job.kind == "train":
        unit = " nats/char" if job.spec.get("tokenizer", "char") == "char" and job.spec.get("task", "lm") == "lm" else ""
        click.echo(
            f"steps {data['steps']}  epochs {data['epochs']:.2f}  train_loss {data['train_loss']:.4f}  "
            f"val_loss {data['val_loss']:.4f} (best {data['best_val_loss']:.4f}){unit}  "
            f"{data['tokens_per_s']:,.0f} tok/s  stopped by {data['stopped_by']}"
        )
        _figures(data)
        if data.get("init_from"):
            click.echo(f"started from language model {data['init_from']['job']}")
        click.echo(f"checkpoint {data['checkpoint']}")
    elif job.kind == "generate":
        for prompt, text in zip(data["prompts"], data["texts"]):
            click.echo(click.style(prompt, bold=True) + text)
            click.echo()
    elif job.kind == "predict":
        _predictions(data)
    else:
        _figures(data)


def _figures(data: dict[str, Any]) -> None:
    shown = [f"{k} {data[k]:.4g}" for k in _FIGURES if isinstance(data.get(k), (int, float))]
    if shown:
        click.echo("  ".join(shown))
    if isinstance(data.get("confusion"), list) and data.get("labels"):
        click.echo("confusion (rows true, columns predicted): " + " ".join(map(str, data["labels"])))
        for label, row in zip(data["labels"], data["confusion"]):
            click.echo(f"  {label!s:>12}  " + " ".join(f"{n:>6}" for n in row))


def _predictions(data: dict[str, Any]) -> None:
    for p in data.get("predictions", []):  # classify
        best = p["probabilities"][p["label"]] if isinstance(p.get("probabilities"), dict) else None
        click.echo(f"{p['label']}" + (f" ({best:.2f})" if best is not None else "") + f"\t{p.get('text', '')}")
    if "forecast" in data:
        click.echo(f"next {len(data['forecast'])} values of {data.get('target', 'the target')}"
                   + (f" after {data['after']}" if data.get("after") is not None else "") + ":")
        click.echo(" ".join(f"{v:.4g}" for v in data["forecast"]))
        for label, key in (("seasonal naive", "seasonal_naive_forecast"), ("Holt-Winters", "holt_winters_forecast")):
            if isinstance(data.get(key), list):
                click.echo(f"{label}: " + " ".join(f"{v:.4g}" for v in data[key]))
        if isinstance(data.get("heldout"), dict):
            click.echo("held out in training: ", nl=False)
            _figures(data["heldout"])
    for line in data.get("translations", []):
        click.echo(line)
    for t in data.get("transcripts", []):  # transcribe
        click.echo(f"{t['audio']}\t{t['text']}")
