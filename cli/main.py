"""`rnnq`: one Click group; each command family lives in its own module."""

from __future__ import annotations

import importlib
from typing import Any

import click

from cli import errors
from cli.context import Context
from rnn_tasks.errors import RnnqError

# Each command's module, imported only when the command runs (or help lists it): `rnnq
# list` loads neither the submit path (spec modules) nor Celery, the sweeps (Optuna's
# YAML) or the stack (subprocess management).
_MODULES = {
    "train": "train", "generate": "submit", "predict": "submit", "eval": "submit",
    "status": "jobs", "list": "jobs", "watch": "jobs", "result": "jobs", "delete": "jobs", "cancel": "jobs",
    "resume": "jobs",
    "exporter": "observe", "plot": "observe",
    "worker": "stack", "up": "stack", "down": "stack", "demo": "stack",
    "sweep": "sweep",
}


class _Group(click.Group):
    """Turns every rnnq error into one line and a non-zero exit, never a traceback; the
    error's field becomes the flag of the command that was run (cli/errors.py)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_MODULES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _MODULES:
            return None
        module = importlib.import_module(f"cli.{_MODULES[name]}")
        return next(c for c in module.COMMANDS if c.name == name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta["rnnq.command"] = command
        return name, command, rest

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:  # the group's own options
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RnnqError as exc:
            raise errors.to_click(exc, ctx.meta.get("rnnq.command")) from None
        except click.UsageError as exc:  # a command's options and arguments, as Click parsed them
            raise _one_line(exc) from None


def _one_line(exc: click.UsageError) -> click.UsageError:
    """Click's usage errors as one line, like rnnq's own: the usage block that Click prints
    before them goes, the command's --help is named at the end instead. (Asking for help
    with no arguments, NoArgsIsHelpError, still prints the help.)"""
    if exc.ctx is None or isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return exc
    return click.UsageError(f"{exc.format_message().rstrip()} (see '{exc.ctx.command_path} --help')")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--redis-url", metavar="URL", help="Broker and job store [env RNNQ_REDIS_URL; default: local stack].")
@click.option("--artifacts", metavar="DIR|s3://BUCKET/PREFIX",
              help="Artifact store: a directory or an S3 bucket [env RNNQ_ARTIFACTS; default ~/.rnnq/artifacts].")
@click.version_option(package_name="rnnq")
@click.pass_context
def rnnq(ctx: click.Context, redis_url: str | None, artifacts: str | None) -> None:
    """Train and sample recurrent neural networks on a Redis-backed Celery cluster.

    With no RNNQ_REDIS_URL, rnnq runs a local Redis and worker for you (`rnnq up`).
    """
    ctx.obj = Context(redis_url, artifacts)


def main() -> None:
    rnnq(prog_name="rnnq")


if __name__ == "__main__":
    main()
