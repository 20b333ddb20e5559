"""Watching the cluster: the Prometheus exporter, and loss plots for people without Grafana."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from cli.context import Context, pass_ctx
from workers.jobstore import JobStore
from workers.settings import redact


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), help="Port to serve /metrics on. [default: 9809]")
@click.option("--addr", metavar="ADDR", help="Address to bind. [default: 0.0.0.0]")
@pass_ctx
def exporter(ctx: Context, port: int | None, addr: str | None) -> None:
    """Serve cluster metrics for Prometheus: queue lengths, in-flight messages, jobs
    by state, workers online and busy, and each running job's loss, lr and progress.

    Run one per cluster; it reads Redis on every scrape and holds no state.
    """
    from workers import exporter as exporter_mod

    ctx.ensure_redis()
    ctx.store.ping()
    port = port or ctx.settings.exporter_port
    addr = addr or ctx.settings.metrics_addr
    exporter_mod.serve(ctx.store, port, addr)
    click.echo(f"exporter for {redact(ctx.settings.redis_url)} on http://{addr}:{port}/metrics", err=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


@click.command()
@click.argument("job")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("loss.png"),
              show_default=True, help="Image file to write (.png, .svg, .pdf).")
@click.option("--log-scale", is_flag=True, help="Logarithmic loss axis.")
@pass_ctx
def plot(ctx: Context, job: str, output: Path, log_scale: bool) -> None:
    """Plot JOB's training and validation loss against step."""
    ctx.ensure_redis()
    record = ctx.store.resolve(job)
    if record.kind != "train":
        raise click.ClickException(f"job {record.id} is a {record.kind} job; only training jobs have a loss curve")
    train, val = loss_curves(ctx.store, record.id)
    if not train:
        raise click.ClickException(f"job {record.id} ({record.state}) has reported no training steps yet")
    draw(train, val, f"{record.name or record.id}: {record.spec.get('arch', '')} ({record.state})", output, log_scale)
    click.echo(f"wrote {output} ({len(train)} points, {len(val)} evaluations)")


def loss_curves(store: JobStore, job_id: str) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, loss) and (step, val_loss) from the job's event log. A step reported by more
    than one attempt (a resume retrains from its checkpoint) keeps the latest value."""
    train: dict[int, float] = {}
    val: dict[int, float] = {}
    for _, event in store.events(job_id):
        step = int(event["step"])
        if isinstance(event.get("loss"), (int, float)):
            train[step] = float(event["loss"])
        if isinstance(event.get("val_loss"), (int, float)):
            val[step] = float(event["val_loss"])
    return sorted(train.items()), sorted(val.items())


def draw(train: list[tuple[int, float]], val: list[tuple[int, float]], title: str, output: Path,
         log_scale: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.plot(*zip(*train, strict=True), label="train", linewidth=1.2)
    if val:
        ax.plot(*zip(*val, strict=True), label="validation", marker="o", markersize=3, linewidth=1.5)
    ax.set(xlabel="step", ylabel="loss (nats per token)", title=title)
    if log_scale:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(output)
    except (ValueError, OSError) as exc:
        raise click.ClickException(f"cannot write {output}: {exc}") from None
    finally:
        plt.close(fig)


COMMANDS = [exporter, plot]
