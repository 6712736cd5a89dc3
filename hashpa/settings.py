"""Configuration as data: dataclass fields that carry their own help text and choices, so that the
command line, config files and validation all read one table."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Sequence

from hashpa.errors import HashpaError


def setting(default: Any, help: str, choices: Sequence[str] | None = None, flag: str | None = None, command_line: bool = True):
    """A dataclass field with its help text; `choices` restricts a string; `flag` names the
    command-line option (default ``--<name with dashes>``); command_line=False keeps it out of the CLI."""
    metadata = {"help": help, "choices": tuple(choices) if choices else None, "flag": flag, "command_line": command_line}
    if isinstance(default, (list, dict, set)) or dataclasses.is_dataclass(default):
        factory = type(default) if dataclasses.is_dataclass(default) else (lambda value=default: type(value)(value))
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class SettingInfo:
    name: str
    type: type  # int, float, str or bool (Optional unwrapped)
    optional: bool  # None is allowed
    default: Any
    help: str
    choices: tuple[str, ...] | None
    flag: str
    command_line: bool


def settings_of(cls) -> list[SettingInfo]:
    """The fields of dataclass `cls` that are plain settings (not nested dataclasses), in order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind, optional = _plain_type(hints[f.name])
        if kind is None:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # a required field
        meta = f.metadata
        flag = meta.get("flag") or ("--" + f.name.replace("_", "-") if "help" in meta else "")  # plain dataclass fields have none
        out.append(SettingInfo(f.name, kind, optional, default, meta.get("help", ""), meta.get("choices"), flag, meta.get("command_line", True)))
    return out


def check_types(cls, values: dict, where: str) -> None:
    """Raise a HashpaError naming `where` and the field when a value of `values` (a dict of `cls`'s
    plain settings) has the wrong type: JSON and config files carry no types of their own."""
    for info in settings_of(cls):
        if info.name not in values:
            continue
        value = values[info.name]
        if value is None and info.optional:
            continue
        if not _has_type(value, info.type):
            expected = info.type.__name__ + (" or null" if info.optional else "")
            raise HashpaError(f"{where}: {_named(info)} must be {expected}, got {value!r}")
        if info.choices and value not in info.choices:
            raise HashpaError(f"{where}: {_named(info)} must be one of {', '.join(info.choices)}, got {value!r}")


def _has_type(value, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    return isinstance(value, (int, float) if kind is float else kind)


def _named(info: SettingInfo) -> str:
    return f"{info.name} ({info.flag.split('/')[0]})" if info.flag else info.name


def _plain_type(hint) -> tuple[type | None, bool]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0], True) if len(rest) == 1 and rest[0] in (int, float, str, bool) else (None, True)
    return (hint, False) if hint in (int, float, str, bool) else (None, False)


def whole_number(value: Any, name: str, minimum: int | None = 1, maximum: int | None = None) -> int:
    """`value` as an int when it is a whole number (an int or a numpy integer, not a bool, a float
    or a string) within [minimum, maximum] (None: no bound); else a HashpaError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) and not (hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0
                                                                        and str(value.dtype).startswith(("int", "uint"))):
        raise HashpaError(f"{name} must be a whole number, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if minimum is not None and maximum is not None else (
            f"at least {minimum}" if minimum is not None else f"at most {maximum}")
        raise HashpaError(f"{name} must be {bounds}, got {value}")
    return value
