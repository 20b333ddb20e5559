"""`rnnq train`, `generate`, `predict` and `eval`: flags -> validated spec -> job sent by task name."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cli import follow
from cli.context import Context, pass_ctx
from cli.types import DEVICE, JOB_NAME, QUEUE
from rnn_tasks.lm.spec import LMSpec
from rnn_tasks.spec import GenerateSpec, PredictSpec, SpecError
from workers import submit as submitter

_ANY_JOB_ID = "0" * 12  # stands in for the source job while checking the other flags


def _default(spec: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(spec) if f.name == name)


def _d(name: str) -> str:
    """' [default: X]' for a LMSpec field, so help shows the spec's own default."""
    value = _default(LMSpec, name)
    return f" [default: {'none' if value is None else value}]"


def _hint(field: str) -> str:
    if field in ("data", "DATA"):
        return "DATA"
    if field in ("target_data", "--target-data"):
        return "--target"
    if field.startswith("-"):
        return field
    if field.startswith("prompts"):
        return "--prompt"
    return "--" + field.replace("_", "-")


def _spec_error(exc: SpecError) -> click.BadParameter:
    return click.BadParameter(exc.message, param_hint=_hint(exc.field))


def _inference_options(what: str, output: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--device, --queue, --name, --wait and --json, shared by generate, predict and eval."""
    options = [
        click.option("--device", type=DEVICE, help="auto | cpu | cuda | cuda:N. [default: auto]"),
        click.option("--queue", type=QUEUE, help="Queue to send the job to. [default: generate]"),
        click.option("--name", type=JOB_NAME, help=f"A name for this {what} job."),
        click.option("--wait", is_flag=True, help=f"Wait and print {output}; exit 0 only if it succeeds."),
        click.option("--json", "as_json", is_flag=True, help="Print {\"job_id\": ...} (with --wait: the result)."),
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


def _report(job_id: str, as_json: bool) -> None:
    click.echo(json.dumps({"job_id": job_id}) if as_json else job_id)


@click.command()
@click.argument("data", type=click.Path(path_type=Path), required=False)
@click.option("--task", type=click.Choice(["lm", "classify", "forecast", "translate", "transcribe"]), default="lm",
              show_default=True, help="What to train: a language model, a classifier, a forecaster, a translator, "
                                      "a speech recogniser.")
@click.option("--tokenizer", type=click.Choice(["char", "word", "bpe"]), help="Text units. [default: char for lm]")
@click.option("--min-freq", type=int, help="word: rarer words become <unk>.")
@click.option("--max-vocab", type=int, help="word: keep only the most frequent words.")
@click.option("--vocab-size", type=int, help="bpe: vocabulary size (per side for translate).")
@click.option("--text-column", help="classify: column with the text (name, or 0-based index).")
@click.option("--label-column", help="classify: column with the label (name, or 0-based index).")
@click.option("--delimiter", help="classify/forecast: CSV delimiter. [default: detected]")
@click.option("--bidirectional/--unidirectional", default=None, help="classify: read texts both ways.")
@click.option("--pooling", type=click.Choice(["mean", "max", "last"]), help="classify: how states become one vector.")
@click.option("--class-weights", type=click.Choice(["balanced", "none"]), help="classify: weigh rare classes up.")
@click.option("--max-len", type=int, help="classify/translate: tokens kept per text.")
@click.option("--time-column", help="forecast: the time column. [default: the first]")
@click.option("--target", metavar="COLUMN|FILE",
              help="forecast: the column to predict. translate: the target-language file (with --source).")
@click.option("--horizon", type=int, help="forecast: steps predicted at once.")
@click.option("--lookback", type=int, help="forecast: past steps the model reads.")
@click.option("--season", type=int, help="forecast: seasonal period (12 for monthly data). [default: detected from the "
              "training part's autocorrelation]")
@click.option("--source", "source_file", type=click.Path(path_type=Path),
              help="translate: the source-language file (line-aligned with --target; plain or gzip).")
@click.option("--attention/--no-attention", default=None, help="translate: decoder attention.")
@click.option("--beam", type=int, help="translate: beam width for evaluation.")
@click.option("--set", "extra", multiple=True, metavar="FIELD=VALUE",
              help="Any other spec field (JSON value), e.g. --set transform='\"log\"'. Repeatable.")
@click.option("--arch", type=click.Choice(["lstm", "gru", "rnn"]), help="Recurrent cell." + _d("arch"))
@click.option("--layers", type=int, help="Stacked recurrent layers." + _d("layers"))
@click.option("--hidden", type=int, help="Hidden state size." + _d("hidden"))
@click.option("--embed", type=int, help="Embedding size." + _d("embed"))
@click.option("--dropout", type=float, help="Dropout on embeddings, between layers, before the head." + _d("dropout"))
@click.option("--tie-weights", is_flag=True, default=None, help="Share embedding and output weights (embed == hidden).")
@click.option("--seq-len", type=int, help="Truncated-BPTT window in tokens (characters for --tokenizer char)." + _d("seq_len"))
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
def train(ctx: Context, data: Path | None, task: str, source_file: Path | None, extra: tuple[str, ...], encoding: str,
          queue: str | None, name: str | None, wait: bool, as_json: bool, no_amp: bool, **options: Any) -> None:
    """Train a model on DATA: a language model on a text file (default), a classifier
    on a CSV/TSV of texts and labels, a forecaster on a CSV time series, a
    translator on line-aligned --source/--target files (or a TSV of pairs as DATA),
    or a speech recogniser on a CSV/TSV manifest of audio paths and transcripts (or a
    folder of name.wav + name.txt).

    Stops at whichever of --max-steps, --epochs and --time-budget comes first (one
    epoch when none is given). Prints the job id.
    """
    fields = {k: v for k, v in options.items() if v is not None}
    fields.update(_extra_fields(extra))
    if no_amp:
        fields["amp"] = False
    paths = _input_paths(task, data, source_file, fields)
    try:
        spec = submitter.build_spec(task, fields, tuple(f"{n}_data" if n != "data" else n for n in paths))
        files = submitter.check_inputs(spec, paths, ctx.settings.max_corpus_bytes, encoding=encoding,
                                       worker_memory=ctx.settings.worker_memory_bytes)
    except SpecError as exc:
        raise _spec_error(exc) from None
    ctx.ensure_stack()
    job = submitter.submit_train(ctx.store, ctx.artifacts, ctx.app, spec, files, queue=queue, name=name)
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
@_inference_options("generation", "the text")
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


def _extra_fields(extra: tuple[str, ...]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not FIELD=VALUE", param_hint="--set")
        try:
            fields[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            fields[key.replace("-", "_")] = value  # a bare word is a string
    return fields


def _input_paths(task: str, data: Path | None, source_file: Path | None, fields: dict[str, Any]) -> dict[str, Path]:
    """The input files by spec name; for translate, --source/--target are files."""
    if task == "translate":
        target = fields.pop("target", None)
        if source_file is not None:
            if data is not None:
                raise click.BadParameter("give DATA (a TSV of pairs) or --source/--target, not both", param_hint="DATA")
            if target is None:
                raise click.BadParameter("--source needs --target (the translations, line-aligned)",
                                         param_hint="--target")
            return {"data": source_file, "target": Path(target)}
        if target is not None:
            raise click.BadParameter("--target needs --source", param_hint="--source")
    elif source_file is not None:
        raise click.BadParameter("only --task translate reads --source", param_hint="--source")
    if data is None:
        raise click.BadParameter("missing the input file", param_hint="DATA")
    return {"data": data}


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
    try:  # flag errors before any I/O (--lm may be a name until the job store resolves it)
        PredictSpec.from_dict({"source": _ANY_JOB_ID, **fields, **({"lm": _ANY_JOB_ID} if "lm" in fields else {})})
    except SpecError as exc:
        raise _spec_error(exc) from None
    _must_exist(input_files, "--input")  # before the local stack is started for nothing
    ctx.ensure_stack()
    limit = ctx.settings.max_corpus_bytes
    data = None
    if input_files and submitter.trained_task(ctx.store, job) == "transcribe":
        data = submitter.speech_inputs(ctx.store, job, list(input_files), "--input", limit, transcripts=False)
    elif len(input_files) > 1:
        raise click.BadParameter("give one --input file (several only for speech recognition)",
                                 param_hint="--input")
    elif input_files:
        data = submitter.read_input(input_files[0], limit, "--input")
    try:
        record = submitter.submit_predict(ctx.store, ctx.artifacts, ctx.app, job, fields, data, queue=queue,
                                          name=name)
    except SpecError as exc:
        raise _spec_error(exc) from None
    _finish(ctx, record.id, wait, as_json)


@click.command("eval")
@click.argument("job")
@click.option("--data", "data_file", type=click.Path(path_type=Path), required=True,
              help="New data laid out like JOB's training input (text, CSV, series, source sentences or TSV).")
@click.option("--target", "target_file", type=click.Path(path_type=Path),
              help="translate: the reference translations, line-aligned with --data.")
@click.option("--beam", type=int, help="translate, transcribe: beam width. [default: the model's]")
@_lm_options
@_inference_options("evaluation", "the figures")
@pass_ctx
def evaluate(ctx: Context, job: str, data_file: Path, target_file: Path | None, queue: str | None,
             name: str | None, wait: bool, as_json: bool, **options: Any) -> None:
    """Evaluate the model trained by JOB on new data: perplexity and bits per character,
    accuracy and macro F1, MAE and RMSE against the seasonal-naive baseline, BLEU
    and chrF, or CER and WER (a speech manifest or folder as --data). The figures are
    stored with the evaluation job."""
    fields: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    limit = ctx.settings.max_corpus_bytes
    _must_exist((data_file,), "--data")
    _must_exist((target_file,) if target_file else (), "--target")
    ctx.ensure_stack()
    if submitter.trained_task(ctx.store, job) == "transcribe":
        files = {"data": submitter.speech_inputs(ctx.store, job, [data_file], "--data", limit, transcripts=True)}
    else:
        files = {"data": submitter.read_input(data_file, limit, "--data")}
    if target_file is not None:
        files["target"] = submitter.read_input(target_file, limit, "--target")
    try:
        record = submitter.submit_eval(ctx.store, ctx.artifacts, ctx.app, job, files, fields, queue=queue, name=name)
    except SpecError as exc:
        raise _spec_error(exc) from None
    _finish(ctx, record.id, wait, as_json)


def _must_exist(paths: tuple[Path, ...], flag: str) -> None:
    for path in paths:
        if not path.exists():
            raise click.BadParameter(f"{path} does not exist", param_hint=flag)


def _finish(ctx: Context, job_id: str, wait: bool, as_json: bool) -> None:
    if not wait:
        _report(job_id, as_json)
        return
    if not as_json:
        click.echo(job_id, err=True)
    final = follow.follow(ctx.store, job_id, quiet=True)
    follow.print_result(ctx, final, as_json)
    follow.exit_with(final)


COMMANDS = [train, generate, predict, evaluate]
