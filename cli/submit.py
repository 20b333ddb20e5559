"""`rnnq train` and `rnnq generate`: flags -> validated spec -> job sent by task name."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from cli import follow
from cli.context import Context, pass_ctx
from cli.types import DEVICE, JOB_NAME, QUEUE
from rnn_tasks.spec import GenerateSpec, SpecError, TrainSpec
from workers import submit as submitter

_ANY_JOB_ID = "0" * 12  # stands in for the source job while checking the other flags


def _default(spec: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(spec) if f.name == name)


def _d(name: str) -> str:
    """' [default: X]' for a TrainSpec field, so help shows the spec's own default."""
    value = _default(TrainSpec, name)
    return f" [default: {'none' if value is None else value}]"


def _hint(field: str) -> str:
    if field == "data":
        return "DATA"
    if field.startswith("prompts"):
        return "--prompt"
    return "--" + field.replace("_", "-")


def _spec_error(exc: SpecError) -> click.BadParameter:
    return click.BadParameter(exc.message, param_hint=_hint(exc.field))


def _report(job_id: str, as_json: bool) -> None:
    click.echo(json.dumps({"job_id": job_id}) if as_json else job_id)


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--arch", type=click.Choice(["lstm", "gru", "rnn"]), help="Recurrent cell." + _d("arch"))
@click.option("--layers", type=int, help="Stacked recurrent layers." + _d("layers"))
@click.option("--hidden", type=int, help="Hidden state size." + _d("hidden"))
@click.option("--embed", type=int, help="Embedding size." + _d("embed"))
@click.option("--dropout", type=float, help="Dropout on embeddings, between layers, before the head." + _d("dropout"))
@click.option("--tie-weights", is_flag=True, default=None, help="Share embedding and output weights (embed == hidden).")
@click.option("--seq-len", type=int, help="Truncated-BPTT window in characters." + _d("seq_len"))
@click.option("--batch-size", type=int, help="Parallel contiguous streams." + _d("batch_size"))
@click.option("--lr", type=float, help="Peak learning rate (AdamW, warmup + cosine)." + _d("lr"))
@click.option("--weight-decay", type=float, help="AdamW weight decay (L2) on weight matrices." + _d("weight_decay"))
@click.option("--l1", type=float, help="L1 penalty coefficient." + _d("l1"))
@click.option("--clip", type=float, help="Gradient-norm clip." + _d("clip"))
@click.option("--warmup-steps", type=int, help="Linear warmup steps." + _d("warmup_steps"))
@click.option("--max-steps", type=int, help="Stop after this many steps.")
@click.option("--epochs", type=float, help="Stop after this many passes over the data.")
@click.option("--time-budget", type=float, metavar="SECONDS", help="Stop after this much training time.")
@click.option("--eval-every", type=int, help="Steps between validation passes." + _d("eval_every"))
@click.option("--val-fraction", type=float, help="Held-out tail of the corpus." + _d("val_fraction"))
@click.option("--patience", type=int, help="Early stop after this many evaluations without improvement." + _d("patience"))
@click.option("--checkpoint-every", type=int, help="Steps between resume checkpoints." + _d("checkpoint_every"))
@click.option("--checkpoint-seconds", type=float, help="Seconds between resume checkpoints." + _d("checkpoint_seconds"))
@click.option("--seed", type=int, help="Random seed." + _d("seed"))
@click.option("--device", type=DEVICE, help="auto | cpu | cuda | cuda:N." + _d("device"))
@click.option("--no-amp", is_flag=True, default=False, help="Disable bf16 autocast on CUDA.")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of DATA.")
@click.option("--queue", type=QUEUE, help="Queue to send the job to. [default: train]")
@click.option("--name", type=JOB_NAME, help="A name to refer to this job (and its model) by.")
@click.option("--wait", is_flag=True, help="Follow the job like `watch`; exit 0 only if it succeeds.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"job_id\": ...}.")
@pass_ctx
def train(ctx: Context, data: Path, encoding: str, queue: str | None, name: str | None, wait: bool, as_json: bool,
          no_amp: bool, **options: Any) -> None:
    """Train a character language model on the text file DATA.

    Stops at whichever of --max-steps, --epochs and --time-budget comes first (one
    epoch when none is given). Prints the job id.
    """
    fields = {k: v for k, v in options.items() if v is not None}
    if no_amp:
        fields["amp"] = False
    try:
        spec = submitter.build_train_spec(fields)
    except SpecError as exc:
        raise _spec_error(exc) from None
    text = submitter.check_train(data, spec, encoding, ctx.settings.max_corpus_bytes)  # before anything starts
    ctx.ensure_stack()
    job = submitter.submit_train(ctx.store, ctx.artifacts, ctx.app, text, spec, queue=queue, name=name)
    _report(job.id, as_json)
    if wait:
        follow.exit_with(follow.follow(ctx.store, job.id, quiet=as_json))


@click.command()
@click.argument("job_or_name")
@click.option("--prompt", "prompts", multiple=True, required=True, help="Text to continue; repeat for a batch.")
@click.option("--max-tokens", type=int, help="New characters per prompt. [default: 200]")
@click.option("--temperature", type=float, help="Softmax temperature; 0 is greedy. [default: 1.0]")
@click.option("--top-k", type=int, help="Sample only from the k most likely characters.")
@click.option("--top-p", type=float, help="Nucleus sampling: smallest set with this much probability.")
@click.option("--greedy", is_flag=True, default=None, help="Always take the most likely character.")
@click.option("--seed", type=int, help="Random seed for reproducible samples.")
@click.option("--device", type=DEVICE, help="auto | cpu | cuda | cuda:N. [default: auto]")
@click.option("--queue", type=QUEUE, help="Queue to send the job to. [default: generate]")
@click.option("--name", type=JOB_NAME, help="A name for this generation job.")
@click.option("--wait", is_flag=True, help="Wait for the text and print it; exit 0 only if it succeeds.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"job_id\": ...} (with --wait: the result).")
@pass_ctx
def generate(ctx: Context, job_or_name: str, prompts: tuple[str, ...], queue: str | None, name: str | None,
             wait: bool, as_json: bool, **options: Any) -> None:
    """Sample text from the model trained by JOB_OR_NAME (a job id or a --name)."""
    fields: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    fields["prompts"] = list(prompts)
    try:
        GenerateSpec.from_dict({"source": _ANY_JOB_ID, **fields})  # flag errors before any I/O
    except SpecError as exc:
        raise _spec_error(exc) from None
    ctx.ensure_stack()
    try:
        job = submitter.submit_generate(ctx.store, ctx.app, job_or_name, fields, queue=queue, name=name)
    except SpecError as exc:
        raise _spec_error(exc) from None
    if not wait:
        _report(job.id, as_json)
        return
    if not as_json:
        click.echo(job.id, err=True)
    final = follow.follow(ctx.store, job.id, quiet=True)
    follow.print_result(ctx, final, as_json)
    follow.exit_with(final)


COMMANDS = [train, generate]
