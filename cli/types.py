"""Click parameter types that fail with a message naming what is wrong."""

from __future__ import annotations

import re
from typing import Any

import click

from rnn_tasks.spec import DEVICE_RE, JOB_ID_RE


class Device(click.ParamType):
    name = "device"
    _re = DEVICE_RE

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if not self._re.match(str(value)):
            self.fail(f"{value!r} is not auto, cpu, cuda or cuda:N", param, ctx)
        return str(value)


class QueueName(click.ParamType):
    name = "queue"
    _re = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if not self._re.match(str(value)):
            self.fail(f"{value!r} is not a queue name (letters, digits, '_', '.', '-')", param, ctx)
        return str(value)


class QueueList(click.ParamType):
    name = "queues"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[str]:
        if isinstance(value, list):
            return value
        names = [q.strip() for q in str(value).split(",") if q.strip()]
        if not names:
            self.fail("give at least one queue", param, ctx)
        return [QueueName().convert(q, param, ctx) for q in names]


class JobName(click.ParamType):
    name = "name"
    _re = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not self._re.match(text) or JOB_ID_RE.match(text):
            self.fail(f"{value!r}: use letters, digits, '_', '.', '-' (and not a 12-hex-digit job id)", param, ctx)
        return text


DEVICE = Device()
QUEUE = QueueName()
QUEUES = QueueList()
JOB_NAME = JobName()
