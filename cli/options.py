"""Click options generated from the library's settings dataclasses, so that every setting is
reachable from the command line, with its help text, choices and default."""

from __future__ import annotations

from typing import Callable, Iterable

import click

from hashpa.settings import SettingInfo, settings_of


def setting_options(classes: Iterable[type], only: set[str] | None = None, defaults: Callable[[SettingInfo], str] | None = None):
    """A decorator adding one option per command-line setting of the dataclasses `classes` (all, or
    those named in `only`). Options default to None, so the command sees what the user gave;
    `defaults` words each setting's default for the help (default: ``shown(info, info.default)``)."""
    infos = [info for cls in classes for info in settings_of(cls) if info.command_line and (only is None or info.name in only)]

    def decorate(command):
        for info in reversed(infos):
            command = _option(info, defaults(info) if defaults else shown(info, info.default))(command)
        return command

    return decorate


def shown(info: SettingInfo, value) -> str:
    """A setting's value as the command line writes it: the flag a boolean is, a number or word; "" for None."""
    if value is None:
        return ""
    if info.type is bool:
        on, off = _flag_pair(info).split("/")
        return on if value else off
    return str(value)


def _flag_pair(info: SettingInfo) -> str:
    return info.flag if "/" in info.flag else f"{info.flag}/--no-{info.flag.removeprefix('--')}"


def _option(info: SettingInfo, default_text: str):
    help_text = f"{info.help} [default: {default_text}]" if default_text else info.help
    if info.type is bool:
        return click.option(_flag_pair(info), info.name, default=None, help=help_text)
    kind = click.Choice(info.choices) if info.choices else {int: int, float: float, str: str}[info.type]
    return click.option(info.flag, info.name, type=kind, default=None, help=help_text)
