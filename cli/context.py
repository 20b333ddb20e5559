"""Per-invocation state shared by the commands: settings and lazily opened clients.

Startup time of the read commands (`rnnq list`, `rnnq status`) is their imports: what
only some commands need is imported where it is used. The local stack's process
management (workers.local: subprocess, signals) only when there is no RNNQ_REDIS_URL;
Celery only for a command that sends a message (tests/integration/test_cli_imports.py).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import click

from workers import settings as settings_mod
from workers.jobstore import JobStore

if TYPE_CHECKING:
    from celery import Celery

    from workers.artifacts import ArtifactStore


class Context:
    def __init__(self, redis_url: str | None, artifacts: str | None) -> None:
        self.settings = settings_mod.resolve(redis_url=redis_url, artifacts=artifacts)

    @cached_property
    def store(self) -> JobStore:
        return JobStore(self.settings.redis_url, retry_seconds=self.settings.cli_retry_seconds)

    @cached_property
    def artifacts(self) -> ArtifactStore:
        from workers.artifacts import open_store

        return open_store(self.settings.artifacts)

    @cached_property
    def app(self) -> Celery:
        from workers.celeryconf import make_app

        return make_app(self.settings)

    def ensure_stack(self) -> None:
        """With no RNNQ_REDIS_URL, start the local Redis and worker if they are not up."""
        if self.settings.local:
            from workers import local

            before = set(local.status(self.settings))
            started = set(local.up(self.settings)) - before
            if started:
                click.echo(f"started local {', '.join(sorted(started))}", err=True)

    def ensure_redis(self) -> None:
        """Read commands against the local default need its Redis, not a worker."""
        if self.settings.local:
            from workers import local

            local.up(self.settings, worker=False)


pass_ctx = click.make_pass_decorator(Context)
