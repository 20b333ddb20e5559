"""`rnnq generate`, `predict` and `eval`: flags -> validated spec -> job sent by task name.
(`rnnq train` lives in cli/train.py.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cli import follow
from cli.context import Context, pass_ctx
from cli.types import DEVICE, JOB_NAME, QUEUE
from rnn_tasks.spec import GenerateSpec, PredictSpec
from workers import submit as submitter

_ANY_JOB_ID = "0" * 12  # stands in for the source job while checking the other flags


def _inference_options(what: str, output: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--device, --queue, --name, --wait and --json, shared by generate, predict and eval."""
    options = [
        click.option("--device", type=DEVICE, help="auto | cpu | cuda | cuda:N. [default: auto]"),
        click.option("--queue", type=QUEUE, help="Queue to send the job to. [default: generate]"),
        click.option("--name", type=JOB_NAME, help=f"A name for this {what} job."),
        click.option("--wait", is_flag=True, help=f"Wait and print {output}; exit 0 only if it succeeds."),
        click.option("--json", "as_json", is_flag=True, help="Print {\"job_id\": ...}; with --wait, the finished job's record."),
    ]

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def _lm_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--lm, --lm-weight and --lm-bonus: shallow fusion of a character LM into speech decoding."""
    fn = click.option("--lm-bonus", type=float, help="transcribe: log-score added per character with --lm. "
                                                     "[default: 1.0]")(fn)
    fn = click.option("--lm-weight", type=float, help="transcribe: weight of the LM's log-probabilities. "
                                                      "[default: 0.5]")(fn)
    return click.option("--lm", metavar="JOB", help="transcribe: a finished character language model job "
                                                    "fused into the beam search.")(fn)


@click.command()
@click.argument("job_or_name")
@click.option("--prompt", "prompts", multiple=True, required=True, help="Text to continue; repeat for a batch.")
@click.option("--max-tokens", type=int, help="New characters per prompt. [default: 200]")
@click.option("--temperature", type=float, help="Softmax temperature; 0 is greedy. [default: 1.0]")
@click.option("--top-k", type=int, help="Sample only from the k most likely characters.")
@click.option("--top-p", type=float, help="Nucleus sampling: smallest set with this much probability.")
@click.option("--greedy", is_flag=True, default=None, help="Always take the most likely character.")
@click.option("--seed", type=int, help="Random seed for reproducible samples.")
@_inference_options("generation", "the text")
@pass_ctx
def generate(ctx: Context, job_or_name: str, prompts: tuple[str, ...], queue: str | None, name: str | None,
             wait: bool, as_json: bool, **options: Any) -> None:
    """Sample text from the model trained by JOB_OR_NAME (a job id or a --name)."""
    fields: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    fields["prompts"] = list(prompts)
    GenerateSpec.from_dict({"source": _ANY_JOB_ID, **fields})  # flag errors before any I/O
    ctx.ensure_stack()
    job = submitter.submit_generate(ctx.store, ctx.app, job_or_name, fields, queue=queue, name=name)
    follow.submitted(ctx, job.id, wait, as_json)


@click.command()
@click.argument("job")
@click.option("--input", "input_files", type=click.Path(path_type=Path), multiple=True,
              help="File to predict on: texts one per line (or the training CSV layout with --format csv), a "
                   "series CSV to forecast after, source sentences to translate (plain or gzip), or for a speech "
                   "recogniser recordings (WAV, FLAC, OGG; repeatable), a manifest or a folder.")
@click.option("--text", "texts", multiple=True, help="An input given inline; repeatable.")
@click.option("--format", "fmt", type=click.Choice(["lines", "csv"]), help="Layout of --input. [default: lines]")
@click.option("--beam", type=int, help="translate, transcribe: beam width (1 = greedy). [default: the model's]")
@click.option("--max-len", type=int, help="translate: longest translation in tokens.")
@_lm_options
@_inference_options("prediction", "the predictions")
@pass_ctx
def predict(ctx: Context, job: str, input_files: tuple[Path, ...], texts: tuple[str, ...], fmt: str | None,
            queue: str | None, name: str | None, wait: bool, as_json: bool, **options: Any) -> None:
    """Run the classifier, forecaster, translator or speech recogniser trained by JOB on new inputs.

    A forecaster given no --input forecasts the next --horizon steps after its
    training series.
    """
    fields: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    if texts:
        fields["texts"] = list(texts)
    if fmt:
        fields["format"] = fmt
    # flag errors before any I/O (--lm may be a name until the job store resolves it)
    PredictSpec.from_dict({"source": _ANY_JOB_ID, **fields, **({"lm": _ANY_JOB_ID} if "lm" in fields else {})})
    _must_exist(input_files, "--input")  # before the local stack is started for nothing
    ctx.ensure_stack()
    limit = ctx.settings.max_corpus_bytes
    data = None
    if input_files:
        data = submitter.inference_input(ctx.store, job, list(input_files), "--input", limit, transcripts=False)
    record = submitter.submit_predict(ctx.store, ctx.artifacts, ctx.app, job, fields, data, queue=queue,
                                      name=name)
    follow.submitted(ctx, record.id, wait, as_json)


@click.command("eval")
@click.argument("job")
@click.option("--data", "data_file", type=click.Path(path_type=Path), required=True,
              help="New data laid out like JOB's training input (text, CSV, series, source sentences or TSV).")
@click.option("--target-file", "target", type=click.Path(path_type=Path),
              help="translate: the reference translations, line-aligned with --data.")
@click.option("--beam", type=int, help="translate, transcribe: beam width. [default: the model's]")
@_lm_options
@_inference_options("evaluation", "the figures")
@pass_ctx
def evaluate(ctx: Context, job: str, data_file: Path, target: Path | None, queue: str | None,
             name: str | None, wait: bool, as_json: bool, **options: Any) -> None:
    """Evaluate the model trained by JOB on new data: perplexity and bits per character,
    accuracy and macro F1, MAE and RMSE against the seasonal-naive baseline, BLEU
    and chrF, or CER and WER (a speech manifest or folder as --data). The figures are
    stored with the evaluation job."""
    fields: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    limit = ctx.settings.max_corpus_bytes
    _must_exist((data_file,), "--data")
    _must_exist((target,) if target else (), "--target-file")
    ctx.ensure_stack()
    files = {"data": submitter.inference_input(ctx.store, job, [data_file], "--data", limit, transcripts=True)}
    if target is not None:
        files["target"] = submitter.read_input(target, limit, "--target-file")
    record = submitter.submit_eval(ctx.store, ctx.artifacts, ctx.app, job, files, fields, queue=queue, name=name)
    follow.submitted(ctx, record.id, wait, as_json)


def _must_exist(paths: tuple[Path, ...], flag: str) -> None:
    for path in paths:
        if not path.exists():
            raise click.BadParameter(f"{path} does not exist", param_hint=flag)


COMMANDS = [generate, predict, evaluate]
