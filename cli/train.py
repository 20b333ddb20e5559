"""`rnnq train`: flags (or a job file) -> validated spec -> job sent by task name.

One command for every kind of model. Its options depend on the kind, so the command
reads --task (or the job file's `task:`) before it parses anything else: `rnnq train
--task forecast --help` lists only what a forecaster takes, with a forecaster's
defaults, and an option of another kind is refused as unknown.

    job file (-f)  <  --set FIELD=VALUE  <  flags         later sources win
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli import follow
from cli.context import Context, pass_ctx
from cli.types import DEVICE, JOB_NAME, QUEUE

if TYPE_CHECKING:
    from rnn_tasks.spec import TrainSpec

KINDS = ("lm", "classify", "forecast", "translate", "transcribe")
# Spec fields that name input files: paths in a job file, uploaded before the job is sent.
INPUT_FIELDS = ("data", "target_data")
# A job file's input already in this cluster's artifact store: what `status --spec` writes
# for an object store, whose stored copies have no local path.
ARTIFACT = "artifact:"


def spec_class(kind: str) -> type[TrainSpec]:
    from rnn_tasks.spec import train_spec_class  # stdlib only; loaded for train alone

    return train_spec_class(kind)


def _fields(kind: str) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(spec_class(kind))}


class _Option(click.Option):
    """An option that applies to some kinds: those whose spec has its field, or `kinds`.

    Help shows the default of the kind being trained (a classifier's --hidden is not a
    language model's), read from the spec class where it is defined.
    """

    def __init__(self, param_decls: Sequence[str] | None = None, *, kinds: frozenset[str] | None = None,
                 field: str | None = None, **attrs: Any) -> None:
        super().__init__(param_decls, **attrs)
        self.kinds = kinds
        self.field = field or self.name or ""

    def applies(self, kind: str) -> bool:
        return kind in self.kinds if self.kinds is not None else self.field in _fields(kind)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        field = _fields(_kind(ctx)).get(self.field) if self.kinds is None else None
        if (record is None or field is None or field.default is dataclasses.MISSING or self.is_flag
                or "[default" in record[1]):
            return record
        value = field.default
        shown = "none" if value is None else value
        return record[0], f"{record[1]}  [default: {shown}]"


def _kind(ctx: click.Context) -> str:
    return str(ctx.meta.get("rnnq.kind", "lm"))


def _peek_kind(args: list[str]) -> str:
    """The kind the command line asks for: --task, else the job file's `task:`, else lm."""
    for i, arg in enumerate(args):
        if arg == "--task" and i + 1 < len(args):
            return args[i + 1] if args[i + 1] in KINDS else "lm"
        if arg.startswith("--task="):
            value = arg.split("=", 1)[1]
            return value if value in KINDS else "lm"
    for i, arg in enumerate(args):
        path = args[i + 1] if arg in ("-f", "--file") and i + 1 < len(args) else None
        if arg.startswith("--file="):
            path = arg.split("=", 1)[1]
        if path is not None:
            try:
                task = _load_job_file(Path(path)).get("task", "lm")
            except (click.ClickException, OSError):
                return "lm"  # the option itself reports the bad file
            return task if task in KINDS else "lm"
    return "lm"


class _TrainCommand(click.Command):
    """Parses with the options of one kind; see the module docstring."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        kind = ctx.meta["rnnq.kind"] = _peek_kind(args)
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:  # an option of another kind: say so
            owners = [k for k in KINDS for p in self.params
                      if isinstance(p, _Option) and exc.option_name in p.opts + p.secondary_opts and p.applies(k)]
            if not owners:
                raise
            raise click.UsageError(f"{exc.option_name} does not apply to --task {kind} (it is for "
                                   f"{', '.join(owners)})", ctx) from None

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        kind = _kind(ctx)
        return [p for p in super().get_params(ctx) if not isinstance(p, _Option) or p.applies(kind)]


def _opt(*decls: str, kinds: tuple[str, ...] | None = None, field: str | None = None,
         **attrs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(*decls, cls=_Option, kinds=frozenset(kinds) if kinds else None, field=field, **attrs)


@click.command(cls=_TrainCommand, epilog="Each kind takes its own options: rnnq train --task KIND --help.")
@click.argument("data", type=click.Path(path_type=Path), required=False)
@click.option("--task", type=click.Choice(KINDS), help="What to train: a language model (lm), a classifier, a "
              "forecaster, a translator, a speech recogniser.  [default: lm, or the job file's task]")
@click.option("-f", "--file", "job_file", type=click.Path(path_type=Path, dir_okay=False), metavar="JOB.yaml",
              help="A job file: any spec field as `field: value` (inputs as paths, relative to the file). "
                   "Flags override it. `rnnq status JOB --spec` writes one.")
@_opt("--tokenizer", type=click.Choice(["char", "word", "bpe"]), help="Text units.")
@_opt("--min-freq", type=int, help="word: rarer words become <unk>.")
@_opt("--max-vocab", type=int, help="word: keep only the most frequent words.")
@_opt("--vocab-size", type=int, help="bpe: vocabulary size (per side for translate).")
@_opt("--text-column", help="Column with the text (name, or 0-based index).")
@_opt("--label-column", help="Column with the label (name, or 0-based index).")
@_opt("--delimiter", help="Column delimiter.  [default: , for .csv, TAB for .tsv, else detected]")
@_opt("--bidirectional/--unidirectional", default=None, help="Read the input both ways.")
@_opt("--pooling", type=click.Choice(["mean", "max", "last"]), help="How states become one vector.")
@_opt("--class-weights", type=click.Choice(["balanced", "none"]), help="Weigh rare classes up.")
@_opt("--max-len", type=int, help="Tokens kept per text.")
@_opt("--init-from", metavar="LM_JOB", help="Start from a finished word or BPE language model (job id or name): "
      "its tokenizer, shape, embedding and recurrent layers (a translator's source side and encoder); "
      "fine-tuned as ULMFiT does.")
@_opt("--time-column", help="The time column. [default: the first]")
@_opt("--target-column", field="target", metavar="COLUMN", help="The column to predict.")
@_opt("--horizon", type=int, help="Steps predicted at once.")
@_opt("--lookback", type=int, help="Past steps the model reads.")
@_opt("--season", type=int, help="Seasonal period (12 for monthly data); none: detected from the training "
      "part's autocorrelation.")
@_opt("--source", "source_file", kinds=("translate",), type=click.Path(path_type=Path),
      help="The source-language file (line-aligned with --target-file; plain or gzip), instead of DATA.")
@_opt("--target-file", kinds=("translate",), type=click.Path(path_type=Path),
      help="The target-language file, line i translating line i of --source.")
@_opt("--attention/--no-attention", default=None, help="Decoder attention.")
@_opt("--beam", type=int, help="Beam width of the final evaluation.")
@click.option("--set", "extra", multiple=True, metavar="FIELD=VALUE",
              help="Any other spec field (JSON value), e.g. --set dropout=0.3. Repeatable.")
@_opt("--arch", type=click.Choice(["lstm", "gru", "rnn"]), help="Recurrent cell.")
@_opt("--layers", type=int, help="Stacked recurrent layers.")
@_opt("--hidden", type=int, help="Hidden state size.")
@_opt("--embed", type=int, help="Embedding size.")
@_opt("--dropout", type=float, help="Dropout on embeddings, between layers, before the head.")
@_opt("--tie-weights", is_flag=True, default=None, help="Share embedding and output weights (embed == hidden).")
@_opt("--seq-len", type=int, help="Truncated-BPTT window in tokens (characters for --tokenizer char).")
@_opt("--batch-size", type=int, help="Examples (streams, rows, pairs) per step.")
@_opt("--lr", type=float, help="Peak learning rate (AdamW, warmup + cosine).")
@_opt("--weight-decay", type=float, help="AdamW weight decay (L2) on weight matrices.")
@_opt("--l1", type=float, help="L1 penalty coefficient.")
@_opt("--clip", type=float, help="Gradient-norm clip.")
@_opt("--warmup-steps", type=int, help="Linear warmup steps.")
@_opt("--ema", type=float, metavar="DECAY", help="Evaluate, and keep as best, a moving average of the weights "
      "with this decay per step (e.g. 0.999); 0: off.")
@_opt("--max-steps", type=int, help="Stop after this many steps.")
@_opt("--epochs", type=float, help="Stop after this many passes over the data.")
@_opt("--time-budget", type=float, metavar="SECONDS", help="Stop after this much training time.")
@_opt("--eval-every", type=int, help="Steps between validation passes.")
@_opt("--eval-seconds", type=float, metavar="SECONDS", help="Also validate after this much training time.")
@_opt("--val-fraction", type=float, help="Held-out part of the data.")
@_opt("--patience", type=int, help="Early stop after this many evaluations without improvement.")
@_opt("--checkpoint-every", type=int, help="Steps between resume checkpoints.")
@_opt("--checkpoint-seconds", type=float, help="Seconds between resume checkpoints.")
@_opt("--seed", type=int, help="Random seed.")
@_opt("--device", type=DEVICE, help="auto | cpu | cuda | cuda:N.")
@_opt("--no-amp", field="amp", is_flag=True, default=None, help="Disable bf16 autocast (CUDA; AMX/AVX512-BF16 CPUs for wide LSTMs).")
@_opt("--encoding", kinds=("lm",), help="Text encoding of DATA.  [default: utf-8]")
@click.option("--queue", type=QUEUE, help="Queue to send the job to. [default: train]")
@click.option("--name", type=JOB_NAME, help="A name to refer to this job (and its model) by.")
@click.option("--wait", is_flag=True, help="Follow the job like `watch`; exit 0 only if it succeeds.")
@click.option("--json", "as_json", is_flag=True,
              help="Print {\"job_id\": ...}; with --wait, the finished job's record.")
@pass_ctx
def train(ctx: Context, data: Path | None, task: str | None, job_file: Path | None, extra: tuple[str, ...],
          queue: str | None, name: str | None, wait: bool, as_json: bool, **options: Any) -> None:
    """Train a model on DATA: a language model on a text file (default), a classifier
    on a CSV/TSV of texts and labels, a forecaster on a CSV time series, a
    translator on line-aligned --source/--target-file (or a TSV of pairs as DATA),
    or a speech recogniser on a CSV/TSV manifest of audio paths and transcripts (or a
    folder of name.wav + name.txt).

    Stops at whichever of --max-steps, --epochs and --time-budget comes first (one
    epoch when none is given). Prints the job id.
    """
    kind = task or _kind(click.get_current_context())
    fields, paths = _from_job_file(job_file, kind) if job_file else ({}, {})
    fields.update(_extra_fields(extra))
    file_encoding = fields.pop("encoding", None)  # the corpus's, not a spec field
    encoding = options.pop("encoding", None) or file_encoding or "utf-8"
    fields.update(_flag_fields(options))
    paths.update(_input_paths(kind, data, options))
    if "data" not in paths:
        raise click.BadParameter("missing the input file", param_hint="DATA")
    _delimiter_from_name(kind, Path(str(paths["data"])).name, fields)
    fields.pop("task", None)
    with tempfile.TemporaryDirectory(prefix="rnnq-inputs-") as scratch:
        local = {n: _local_copy(ctx, where, Path(scratch) / n) for n, where in paths.items()}
        job_id = _submit(ctx, kind, fields, local, encoding, queue, name)
    follow.submitted(ctx, job_id, wait, as_json)


def _local_copy(ctx: Context, where: Path | str, dest: Path) -> Path:
    """A job file's `artifact:KEY` input fetched from the artifact store; a path as it is."""
    if isinstance(where, Path):
        return where
    return ctx.artifacts.get_file(where.removeprefix(ARTIFACT), dest)


def _submit(ctx: Context, kind: str, fields: dict[str, Any], paths: dict[str, Path], encoding: str,
            queue: str | None, name: str | None) -> str:
    """Check the spec and the inputs, then upload, record and send the job; its id."""
    from workers import submit as submitter

    inputs = tuple("data" if n == "data" else f"{n}_data" for n in paths)
    if any(fields.get(name) is not None for name in spec_class(kind).SOURCE_FIELDS):  # --init-from JOB
        ctx.ensure_stack()  # the job store knows the job it names
        fields = submitter.resolve_sources(ctx.store, kind, fields)
    spec = submitter.build_spec(kind, fields, inputs)
    files = submitter.check_inputs(spec, paths, ctx.settings.max_corpus_bytes, encoding=encoding,
                                   worker_memory=ctx.settings.worker_memory_bytes)
    ctx.ensure_stack()
    job = submitter.submit_train(ctx.store, ctx.artifacts, ctx.app, spec, files, queue=queue, name=name)
    return job.id


def _flag_fields(options: dict[str, Any]) -> dict[str, Any]:
    """Spec fields from the flags given (None: not given)."""
    fields: dict[str, Any] = {}
    for key, value in options.items():
        if value is None or key in ("source_file", "target_file"):
            continue
        if key == "target_column":
            fields["target"] = value
        elif key == "no_amp":
            fields["amp"] = not value
        else:
            fields[key] = value
    return fields


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


def _input_paths(kind: str, data: Path | None, options: dict[str, Any]) -> dict[str, Path]:
    """The input files given on the command line, by input name ("data", "target")."""
    source, target = options.get("source_file"), options.get("target_file")
    if kind == "translate" and (source is not None or target is not None):
        if data is not None:
            raise click.BadParameter("give DATA (a TSV of pairs) or --source/--target-file, not both",
                                     param_hint="DATA")
        if source is None or target is None:
            missing = "--target-file" if source is not None else "--source"
            raise click.BadParameter("--source and --target-file go together (line-aligned files)",
                                     param_hint=missing)
        return {"data": source, "target": target}
    return {"data": data} if data is not None else {}


def _delimiter_from_name(kind: str, name: str, fields: dict[str, Any]) -> None:
    """A .csv file is read as CSV and a .tsv as TSV, unless a delimiter is given."""
    if kind in ("classify", "forecast") and fields.get("delimiter") is None:
        from rnn_tasks.classify.table import delimiter_for

        delimiter = delimiter_for(name)
        if delimiter is not None:
            fields["delimiter"] = delimiter


def _load_job_file(path: Path) -> dict[str, Any]:
    """The fields of a job file, read as a sweep file is (workers.sweepfile.compose): a key
    given twice is refused naming its line, and `1e-4` is a number, not a string."""
    from workers.sweepfile import SweepError, compose

    try:
        loaded, _ = compose(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}", param_hint="-f") from None
    except UnicodeDecodeError as exc:
        raise click.BadParameter(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})", param_hint="-f") from None
    except SweepError as exc:
        raise click.BadParameter(f"{path}: {exc.message}", param_hint="-f") from None
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise click.BadParameter(f"{path} must hold `field: value` lines", param_hint="-f")
    return loaded


def _from_job_file(path: Path, kind: str) -> tuple[dict[str, Any], dict[str, Path | str]]:
    """Spec fields and inputs (paths relative to the file, or `artifact:KEY`) from a job
    file; an unknown key is refused naming it."""
    loaded = _load_job_file(path)
    known = set(_fields(kind)) | {"encoding"}
    fields: dict[str, Any] = {}
    paths: dict[str, Path | str] = {}
    for key, value in loaded.items():
        if key not in known:
            raise click.BadParameter(f"{path}: unknown key {key!r} for a {kind} job", param_hint="-f")
        if key == "task" and value != kind:
            continue  # --task on the command line overrides the file's
        if key in INPUT_FIELDS and value is not None:
            if not isinstance(value, str):
                raise click.BadParameter(f"{path}: {key} must be a file path, got {value!r}", param_hint="-f")
            text = value
            where = text if text.startswith(ARTIFACT) else (path.parent / text).expanduser()
            paths["data" if key == "data" else "target"] = where
        elif key not in INPUT_FIELDS:
            fields[key] = value
    return fields, paths


COMMANDS = [train]
