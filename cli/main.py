"""`rnnq`: one Click group; each command family lives in its own module."""

from __future__ import annotations

from typing import Any

import click

from cli import errors, jobs, observe, stack, submit, sweep
from cli.context import Context


class _Group(click.Group):
    """Turns every rnnq error into one line and a non-zero exit, never a traceback; the
    error's field becomes the flag of the command that was run (cli/errors.py)."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta["rnnq.command"] = command
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.handled() as exc:
            raise errors.to_click(exc, ctx.meta.get("rnnq.command")) from None


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


for module in (submit, jobs, observe, stack, sweep):
    for command in module.COMMANDS:
        rnnq.add_command(command)


def main() -> None:
    rnnq(prog_name="rnnq")


if __name__ == "__main__":
    main()
