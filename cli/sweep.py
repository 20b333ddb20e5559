"""`rnnq sweep`: hyperparameter sweeps (an Optuna study whose trials are training jobs).

    rnnq sweep FILE [--parallel N] [--name NAME] [--wait]   (also `rnnq sweep run FILE`)
    rnnq sweep list [--json]           rnnq sweep status NAME [--json]
    rnnq sweep best NAME               rnnq sweep plot NAME -o DIR
    rnnq sweep cancel NAME             rnnq sweep delete NAME [--force]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from cli.context import Context, pass_ctx
from cli.types import JOB_NAME, QUEUE
from workers import dispatch, sweepboard, sweepend, sweepfile
from workers import sweep as sweeps

POLL_SECONDS = 1.0  # how often `--wait` advances the sweep and looks for ended trials


class _SweepGroup(click.Group):
    """`rnnq sweep FILE` is `rnnq sweep run FILE`: a first argument that is not a
    subcommand is the sweep file."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_SweepGroup)
def sweep() -> None:
    """Hyperparameter sweeps: `rnnq sweep FILE` runs the sweep FILE describes (see the README,
    "Sweeps"); the subcommands list sweeps, and read, plot, cancel or delete one."""


def _sender(ctx: Context) -> sweeps.Send:
    return lambda job_id, kind, queue: dispatch.send_job(ctx.store, job_id, kind, queue, ctx.app)


@sweep.command("run")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--parallel", type=click.IntRange(1, 1000), help="Trials queued or running at once. [default: the "
              "file's parallel, else 2]")
@click.option("--name", type=JOB_NAME, help="The sweep's name. [default: the file's name, else its stem + 4 hex digits]")
@click.option("--queue", type=QUEUE, help="Queue the trials go to. [default: the file's queue, else train]")
@click.option("--wait", is_flag=True, help="Follow the sweep until every trial ended; print the best trial's job id "
              "and exit 0 if a trial completed.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"sweep\": NAME} (with --wait: the leaderboard).")
@pass_ctx
def run(ctx: Context, file: Path, parallel: int | None, name: str | None, queue: str | None, wait: bool,
        as_json: bool) -> None:
    """Check FILE, upload its inputs, create the study and queue the first trials. Later
    trials are queued as earlier ones end (by the workers; --wait also does it)."""
    spec = sweepfile.load(file)
    base = sweeps.prepare(spec, ctx.artifacts, ctx.settings.max_corpus_bytes, ctx.settings.worker_memory_bytes)
    name = name or sweeps.default_name(spec, file)
    ctx.ensure_stack()
    config = sweeps.create(ctx.store, spec, base, name, parallel, queue)
    sweeps.advance(ctx.store, name, _sender(ctx))
    if not wait:
        click.echo(json.dumps({"sweep": name}) if as_json else name)
        return
    if not as_json:
        click.echo(f"sweep {name}: {config['trials']} trials, {config['parallel']} at a time, "
                   f"{config['objective']} ({config['direction']})", err=True)
    _follow(ctx, name, quiet=as_json)
    rec, rows = sweepboard.leaderboard(ctx.store, name)
    if as_json:
        click.echo(json.dumps(_status_json(rec, rows), indent=1))
    else:
        _print_board(rec, rows)
    best = sweepboard.best(ctx.store, name)  # an RnnqError (no completed trial) is one line at the group
    if not as_json:
        click.echo(f"best: {best}")


def _follow(ctx: Context, name: str, quiet: bool) -> None:
    """Advance the sweep until it is over, printing each trial as it ends."""
    seen: set[int] = set()
    while True:
        sweeps.advance(ctx.store, name, _sender(ctx))
        rec = sweeps.record(ctx.store, name)
        ended = sweeps.told(ctx.store, name)
        for number in sorted(ended - seen):
            if not quiet:
                click.echo(_trial_line(ctx, name, number), err=True)
        seen |= ended
        if rec["state"] != "running" and sweeps.in_flight(ctx.store, name) == 0:
            return
        time.sleep(POLL_SECONDS)


def _trial_line(ctx: Context, name: str, number: int) -> str:
    job_id = sweeps.trials(ctx.store, name).get(number) or ""
    if not job_id:
        return f"trial {number}: invalid spec, failed"
    job = ctx.store.get(job_id)
    state = "pruned" if (job.result or {}).get("stopped_by") == "pruned" else job.state
    steps = (job.result or {}).get("steps", "-")
    value = sweeps.figure(job.result or {}, sweeps.record(ctx.store, name)["config"]["objective"])
    return f"trial {number} ({job_id}): {state} at step {steps}" + ("" if value is None else f", {value:.4f}")


def _status_json(rec: dict[str, Any], rows: list[sweepboard.TrialRow]) -> dict[str, Any]:
    config = rec["config"]
    return {"sweep": rec["name"], "state": rec["state"], "objective": config["objective"],
            "direction": config["direction"], "trials_planned": config["trials"],
            "trials": [row.to_dict() for row in rows]}


def _print_board(rec: dict[str, Any], rows: list[sweepboard.TrialRow]) -> None:
    config = rec["config"]
    click.echo(f"sweep {rec['name']}  {rec['state']}  {len(rows)}/{config['trials']} trials  "
               f"{config['objective']} ({config['direction']})")
    header = ("trial", "job", "state", config["objective"], "steps", "parameters")
    table = [header] + [
        (str(r.trial), r.job_id or "-", r.state, "-" if r.value is None else f"{r.value:.4f}",
         "-" if r.steps is None else str(r.steps), ("(enqueued) " if r.enqueued else "") + _params(r.params))
        for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)) + "  " + line[-1])


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


@sweep.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(ctx: Context, name: str, as_json: bool) -> None:
    """The leaderboard of sweep NAME: trial, job, state, figure, steps, parameters (best first)."""
    ctx.ensure_redis()
    rec, rows = sweepboard.leaderboard(ctx.store, name)
    if as_json:
        click.echo(json.dumps(_status_json(rec, rows), indent=1))
    else:
        _print_board(rec, rows)


@sweep.command()
@click.argument("name")
@pass_ctx
def best(ctx: Context, name: str) -> None:
    """Print the job id of the best completed trial: `rnnq generate $(rnnq sweep best NAME) ...`."""
    ctx.ensure_redis()
    click.echo(sweepboard.best(ctx.store, name))


@sweep.command()
@click.argument("name")
@pass_ctx
def cancel(ctx: Context, name: str) -> None:
    """Ask for no more trials and cancel every trial still queued or running."""
    ctx.ensure_redis()
    cancelled = sweepend.cancel(ctx.store, name, _sender(ctx))
    click.echo(f"cancelled sweep {name}: {len(cancelled)} trial(s) queued or running were cancelled")


@sweep.command("list")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Newest N sweeps.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_sweeps(ctx: Context, limit: int, as_json: bool) -> None:
    """List sweeps, newest first: state, trials asked of those planned, and trials by state
    (pruned: stopped by the pruner; failed includes trials with no job). A name whose
    submit died before recording the sweep shows as half-made; `rnnq sweep delete NAME`
    frees it."""
    ctx.ensure_redis()
    rows = sweepboard.summaries(ctx.store, limit)
    if as_json:
        click.echo(json.dumps([row.to_dict() for row in rows], indent=1))
        return
    states = sweepboard.TRIAL_STATES
    table = [("SWEEP", "STATE", "CREATED", "TRIALS", *(s.upper() for s in states), "OBJECTIVE")] + [
        (row.name, row.state, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.created_at)),
         f"{sum(row.trials.values())}/{row.planned}", *(str(row.trials[s]) for s in states), row.objective or "-")
        for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


@sweep.command()
@click.argument("name")
@click.option("--force", is_flag=True, help="Cancel the trials still queued or running, wait for them to stop, "
              "then delete.")
@pass_ctx
def delete(ctx: Context, name: str, force: bool) -> None:
    """Delete sweep NAME: its trials' jobs (records, metrics, checkpoints, samples), its
    Optuna study and its records. Refused while a trial is queued or running, unless
    --force. Uploaded inputs are shared between jobs and stay."""
    ctx.ensure_redis()
    jobs = sweepend.delete(ctx.store, ctx.artifacts, name, _sender(ctx), force=force)
    click.echo(f"deleted sweep {name}: {len(jobs)} trial job(s), their artifacts and its study")


@sweep.command()
@click.argument("name")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), required=True, help="Directory for the PNGs.")
@pass_ctx
def plot(ctx: Context, name: str, out: Path) -> None:
    """Optimisation history, intermediate values (pruned trials included) and parameter
    importances of sweep NAME, as PNGs in DIR."""
    ctx.ensure_redis()
    for path in sweepboard.plot(ctx.store, name, out):
        click.echo(str(path))


COMMANDS = [sweep]
