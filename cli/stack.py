"""Running rnnq: `worker`, the local stack (`up`, `down`) and the one-minute `demo`."""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import click

from cli import follow
from cli.context import Context, pass_ctx
from cli.types import DEVICE, QUEUES
from workers import local
from workers import settings as settings_mod
from workers import submit as submitter
from workers.gpus import GpuSpecError, parse_gpus
from workers.settings import redact


@click.command()
@click.option("--queues", type=QUEUES, default="train,generate", show_default=True, help="Queues to consume.")
@click.option("--concurrency", type=click.IntRange(1), default=1, show_default=True,
              help="Jobs run at once (pool processes).")
@click.option("--device", type=DEVICE, help="Device for jobs that ask for 'auto' (e.g. cuda:1).")
@click.option("--gpus", metavar="all|IDS",
              help="'all' or comma-separated GPU ids: one pool process per GPU, a fresh process per job.")
@click.option("--name", help="Worker node name. [default: rnnq-<pid>]")
@click.option("--loglevel", default="INFO", show_default=True, help="Celery log level.")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve Prometheus metrics of this worker node on this port (e.g. 9808) [env RNNQ_METRICS_PORT].")
@click.option("--metrics-addr", metavar="ADDR", help="Address the metrics endpoint binds. [default: 0.0.0.0]")
@pass_ctx
def worker(ctx: Context, queues: list[str], concurrency: int, device: str | None, gpus: str | None,
           name: str | None, loglevel: str, metrics_port: int | None, metrics_addr: str | None) -> None:
    """Run a worker: `celery -A workers.app worker` with rnnq's settings.

    On GPUs each job runs in a fresh pool process (--max-tasks-per-child 1), so CUDA
    memory is returned between jobs and CUDA is never initialised in the parent.
    """
    ids: list[str] = []
    if gpus:
        try:
            ids = parse_gpus(gpus, ",".join(settings_mod.visible_gpus()) or None)
        except GpuSpecError as exc:
            raise click.BadParameter(str(exc), param_hint="--gpus") from None
    ctx.ensure_redis()
    s = ctx.settings
    if ids:
        concurrency = len(ids)
        s = replace(s, worker_gpus=",".join(ids), worker_device=device or "cuda")
    elif device:
        s = replace(s, worker_device=device)
    s = replace(s, worker_processes=concurrency)  # its jobs share the node's cores (rnn_tasks.device)
    node = name or f"rnnq-{os.getpid()}"
    if metrics_port is not None:
        s = replace(s, metrics_port=metrics_port)
    if metrics_addr is not None:
        s = replace(s, metrics_addr=metrics_addr)
    if s.metrics_port is not None and not s.metrics_dir:
        # prometheus_client's multiprocess mode: pool processes write here, the parent
        # serves the sum. Set before Celery (and prometheus_client) start; wiped there.
        s = replace(s, metrics_dir=str(s.home / "metrics" / node))
    # Without Celery's gossip, mingle and heartbeat: they are Celery events, which nothing
    # here reads (no Flower, no `celery events`); rnnq's own node heartbeat says which
    # nodes are online (workers.app) and the job's lease which jobs are alive. The
    # heartbeat alone was a PUBLISH every 2 s from every node. `celery inspect` still
    # works: it goes through the control queue, not events.
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", ",".join(queues),
            "-c", str(concurrency), "-n", f"{node}@%h", "--loglevel", loglevel,
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-P", "prefork"]
    if gpus or (s.worker_device or "").startswith("cuda"):
        argv += ["--max-tasks-per-child", "1"]
    click.echo(f"worker on {redact(s.redis_url)}, queues {','.join(queues)}, artifacts {s.artifacts}", err=True)
    sys.stdout.flush()
    os.execvpe(sys.executable, argv, settings_mod.environ() | settings_mod.export(s))


@click.command()
@pass_ctx
def up(ctx: Context) -> None:
    """Start the local Redis (127.0.0.1) and one worker in the background."""
    if not ctx.settings.local:
        raise click.ClickException("RNNQ_REDIS_URL is set: `up` manages only the local stack")
    procs = local.up(ctx.settings)
    for name, proc in procs.items():
        click.echo(f"{name:<7} pid {proc.pid}  log {proc.log}")
    click.echo(f"redis   {ctx.settings.redis_url}")


@click.command()
@pass_ctx
def down(ctx: Context) -> None:
    """Stop the processes `rnnq up` started (and only those)."""
    stopped = local.down(ctx.settings)
    click.echo(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


def demo_corpus() -> str:
    """Text every Python installation has: the language reference behind pydoc's topics."""
    try:
        from pydoc_data.topics import topics

        return "\n\n".join(topics[k] for k in sorted(topics))
    except ImportError:  # some distributions strip pydoc_data; fall back to stdlib source
        import inspect
        import json as json_mod
        import textwrap

        return "\n\n".join(inspect.getsource(m) for m in (textwrap, json_mod.decoder, json_mod.encoder, inspect))


@click.command()
@click.option("--seconds", type=click.FloatRange(5, 3600), default=60, show_default=True, help="Training time.")
@pass_ctx
def demo(ctx: Context, seconds: float) -> None:
    """Train a char-LSTM on Python's own docs for a minute, then print samples."""
    corpus = Path(tempfile.mkdtemp(prefix="rnnq-demo-")) / "python_reference.txt"
    corpus.write_text(demo_corpus(), encoding="utf-8")
    spec = submitter.build_spec("lm", {"arch": "lstm", "lr": 6e-3, "time_budget": seconds, "eval_every": 100})
    files = submitter.check_inputs(spec, {"data": corpus}, worker_memory=ctx.settings.worker_memory_bytes)
    ctx.ensure_stack()
    click.echo(f"training on {corpus} ({len(files['data']):,} bytes) for {seconds:g} s", err=True)
    job = submitter.submit_train(ctx.store, ctx.artifacts, ctx.app, spec, files, name="demo")
    trained = follow.follow(ctx.store, job.id)
    follow.print_result(ctx, trained, as_json=False)
    follow.exit_with(trained)
    prompts = ["The ", "A class ", "def "]
    fields = {"prompts": prompts, "max_tokens": 300, "temperature": 0.7, "seed": 0}
    sample = submitter.submit_generate(ctx.store, ctx.app, job.id, fields)
    click.echo("\nsamples (temperature 0.7):\n")
    final = follow.follow(ctx.store, sample.id, quiet=True)
    follow.print_result(ctx, final, as_json=False)
    follow.exit_with(final)


COMMANDS = [worker, up, down, demo]
