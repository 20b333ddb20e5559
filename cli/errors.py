"""Errors at the edge: every rnnq error becomes one line and a non-zero exit.

The layers below name what an error concerns by *field* (a spec field such as
`seq_len`, an input such as `data`, an `RNNQ_*` variable); only this module knows the
flags the user typed, so it maps the field to the command's own option or argument.
"""

from __future__ import annotations

import re

import click

from rnn_tasks.errors import ConfigError

# Spec fields whose flag is not simply --field-name (the CLI renamed them for clarity).
_RENAMED = {
    "target_data": "--target-file",  # translate: the target-language file
    "prompts": "--prompt",
    "texts": "--text",
}
_INDEXED = re.compile(r"^(\w+)\[(\d+)\]$")  # prompts[2] -> --prompt #3


def flag_for(field: str, command: click.Command | None = None) -> str:
    """The flag (or argument metavar) the user gave for `field`, as `command` spells it."""
    if field.startswith(("-", "RNNQ_")) or field.isupper():
        return field  # already a flag, an argument metavar or a variable name
    indexed = _INDEXED.match(field)
    if indexed:
        return f"{flag_for(indexed.group(1), command)} #{int(indexed.group(2)) + 1}"
    if field in _RENAMED:
        return _RENAMED[field]
    long = "--" + field.replace("_", "-")
    for param in command.params if command is not None else ():
        if getattr(param, "field", param.name) == field or long in param.opts:
            if isinstance(param, click.Argument):
                return param.human_readable_name
            return max(param.opts, key=len)
    if field == "data":
        return "DATA"
    return long


def to_click(exc: Exception, command: click.Command | None) -> click.ClickException:
    """The one-line Click error for an rnnq error (or a spec error carrying a field)."""
    field = getattr(exc, "field", None)
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, ConfigError) or field is None:
        return click.ClickException(f"{field}: {message}" if field else message)
    return click.BadParameter(message, param_hint=flag_for(field, command))
