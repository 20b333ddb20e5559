"""Read commands: status, list, watch, result. Each has --json for scripts."""

from __future__ import annotations

import filecmp
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from cli import follow
from cli.context import Context, pass_ctx
from workers.jobstore import FINAL_STATES, STATES, Job

_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _status_dict(job: Job) -> dict[str, Any]:
    data = job.to_dict()
    data.pop("vocab", None)
    data["job_id"] = data.pop("id")
    return data


@click.command()
@click.argument("job")
@_json_option
@click.option("--spec", "as_spec", is_flag=True,
              help="Print a job file that trains JOB again: save it and run `rnnq train -f FILE`.")
@pass_ctx
def status(ctx: Context, job: str, as_json: bool, as_spec: bool) -> None:
    """Show the record of JOB (an id or a name)."""
    ctx.ensure_redis()
    record = ctx.store.resolve(job)
    if as_spec:
        click.echo(_job_file(ctx, record), nl=False)
        return
    if as_json:
        click.echo(json.dumps(_status_dict(record), indent=1))
        return
    rows = [
        ("job", record.id), ("name", record.name or "-"), ("kind", record.kind), ("state", record.state),
        ("queue", record.queue), ("submitted", _when(record.created_at)), ("started", _when(record.started_at)),
        ("finished", _when(record.finished_at)), ("worker", record.worker or "-"), ("attempts", str(record.attempts)),
    ]
    if record.worker_losses:
        rows.append(("lost", f"{record.worker_losses} worker(s) died running it or gave it up"))
    if record.last_loss:
        rows.append(("given up", record.last_loss))
    if record.resumed_from is not None:
        rows.append(("resumed", f"from the checkpoint at step {record.resumed_from}"))
    if record.progress:
        p = record.progress
        rows.append(("progress", f"{p.get('progress', 0):.0%}  step {p.get('step')}  loss {p.get('loss', 0):.4f}"))
    if record.error:
        rows.append(("error", record.error))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


def _job_file(ctx: Context, record: Job) -> str:
    """The YAML job file of a training job: every spec field, inputs as the paths of the
    stored copies (content-addressed, so the re-run uploads nothing new), or for an
    object store, whose copies have no path, as `artifact:KEY`."""
    import yaml

    if record.kind != "train":
        raise click.ClickException(f"job {record.id} is a {record.kind} job; only training jobs have a job file")
    spec = dict(record.spec)
    local = isinstance(ctx.settings.artifacts, Path)
    for key in ("data", "target_data"):
        if spec.get(key):
            spec[key] = ctx.artifacts.location(spec[key]) if local else f"artifact:{spec[key]}"
    head = f"# rnnq train -f THIS_FILE trains job {record.id} again ({record.name or 'unnamed'}).\n"
    return head + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)


@click.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Newest N jobs.")
@_json_option
@pass_ctx
def list_jobs(ctx: Context, state: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first."""
    ctx.ensure_redis()
    jobs = ctx.store.list_jobs(state=state, limit=limit)
    if as_json:
        click.echo(json.dumps([_status_dict(j) for j in jobs], indent=1))
        return
    click.echo(f"{'JOB':<12}  {'KIND':<8}  {'STATE':<9}  {'QUEUE':<10}  {'SUBMITTED':<19}  {'NAME':<16}  INFO")
    for j in jobs:
        info = ""
        if j.state == "running" and j.progress:
            info = f"{j.progress.get('progress', 0):.0%} loss {j.progress.get('loss', 0):.3f}"
        elif j.state == "succeeded" and j.kind == "train" and j.result:
            info = f"val_loss {j.result['val_loss']:.4f}"
        elif j.error:
            info = j.error[:60]
        click.echo(f"{j.id:<12}  {j.kind:<8}  {j.state:<9}  {j.queue:<10}  {_when(j.created_at):<19}  "
                   f"{(j.name or '-'):<16}  {info}")


@click.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="No progress bar; print the final result as JSON.")
@pass_ctx
def watch(ctx: Context, job: str, as_json: bool) -> None:
    """Follow JOB live (step, loss, val loss, tokens/s, ETA) and print its result.

    Exits non-zero if the job failed or was cancelled.
    """
    ctx.ensure_redis()
    record = follow.follow(ctx.store, ctx.store.resolve(job).id, quiet=as_json)
    follow.print_result(ctx, record, as_json=as_json)
    follow.exit_with(record)


@click.command()
@click.argument("jobs", nargs=-1, required=True)
@click.option("--keep-artifacts", is_flag=True, help="Delete only the records, not checkpoints and samples.")
@pass_ctx
def delete(ctx: Context, jobs: tuple[str, ...], keep_artifacts: bool) -> None:
    """Delete finished JOBS: their records, metric streams and artifacts.

    Uploaded corpora are shared between jobs and stay.
    """
    ctx.ensure_redis()
    records = [ctx.store.resolve(j) for j in jobs]  # all or nothing: unknown ids fail first
    for record in records:
        if record.state not in FINAL_STATES:
            raise click.ClickException(f"job {record.id} is {record.state}; only finished jobs can be deleted")
    for record in records:
        ctx.store.delete(record.id)
        if not keep_artifacts:
            ctx.artifacts.delete_prefix(f"jobs/{record.id}")
        click.echo(f"deleted {record.id}")


@click.command()
@click.argument("job")
@_json_option
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), help="Copy the job's artifacts here.")
@click.option("--force", is_flag=True,
              help="With --output: replace files of the same name that hold something else (another job's).")
@pass_ctx
def result(ctx: Context, job: str, as_json: bool, output: Path | None, force: bool) -> None:
    """Print the result of JOB: losses and checkpoint, or the generated texts.

    Exits non-zero unless the job succeeded.
    """
    ctx.ensure_redis()
    record = ctx.store.resolve(job)
    if output is not None and record.state == "succeeded":
        try:
            _copy_out(ctx, record, output, force)
        except OSError as exc:
            raise click.ClickException(f"could not copy the artifacts of job {record.id} to {output}: {exc}") from None
    follow.print_result(ctx, record, as_json)
    follow.exit_with(record)


def _copy_out(ctx: Context, record: Job, output: Path, force: bool) -> None:
    """Copy the job's artifacts into `output`, all or none: fetched beside it first, then a
    file of the same name holding something else (another job's samples.json) stops the
    copy unless `force`; the same file again (a second `result --output`) is no clash."""
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".rnnq-", dir=output) as staging:
        fetched = [ctx.artifacts.copy_out(key, Path(staging)) for key in record.artifacts.values()
                   if ctx.artifacts.exists(key)]
        clashes = [f.name for f in fetched if _differs(f, output / f.name)]
        if clashes and not force:
            raise click.ClickException(f"{output} already holds {', '.join(clashes)} with other contents; "
                                       f"pass --force to replace, or choose another --output")
        for f in fetched:
            os.replace(f, output / f.name)


def _differs(new: Path, old: Path) -> bool:
    return old.exists() and not (old.is_file() and filecmp.cmp(new, old, shallow=False))


@click.command()
@click.argument("jobs", nargs=-1, required=True)
@pass_ctx
def cancel(ctx: Context, jobs: tuple[str, ...]) -> None:
    """Cancel JOBS: a queued job never starts; a running one stops at its next step,
    saves a checkpoint and ends as cancelled (`rnnq resume` continues it)."""
    ctx.ensure_redis()
    for job in jobs:
        record = ctx.store.resolve(job)
        outcome = ctx.store.cancel(record.id)
        messages = {
            "cancelled": f"cancelled {record.id}",
            "requested": f"cancelling {record.id}: it stops at its next step",
        }
        click.echo(messages.get(outcome, f"{record.id} is already {outcome}; nothing to cancel"))


@click.command()
@click.argument("job")
@click.option("--wait", is_flag=True, help="Follow the job; exit 0 only if it succeeds.")
@pass_ctx
def resume(ctx: Context, job: str, wait: bool) -> None:
    """Run a cancelled or failed training JOB again from its last checkpoint."""
    ctx.ensure_stack()
    record = ctx.store.resolve(job)
    if record.kind != "train":
        raise click.ClickException(f"job {record.id} is a {record.kind} job; only training jobs resume")
    state = ctx.store.reopen(record.id)
    if state != "queued":
        raise click.ClickException(f"job {record.id} is {state}; only cancelled or failed jobs can be resumed")
    from workers import dispatch

    dispatch.send_job(ctx.store, record.id, record.kind, record.queue, ctx.app)
    has_checkpoint = ctx.artifacts.exists(f"jobs/{record.id}/last.safetensors")
    click.echo(f"resumed {record.id}" + ("" if has_checkpoint else " (no checkpoint yet: starting from step 0)"))
    if wait:
        follow.exit_with(follow.follow(ctx.store, record.id))


COMMANDS = [status, list_jobs, watch, result, delete, cancel, resume]
