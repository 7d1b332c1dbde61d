"""A stage's settings, declared once: one frozen dataclass whose fields become its command-line flags.

A field made by `setting(default, help)` is a flag, --NAME (or `flag=`), typed from its annotation:
int, float, str or X | None; tuple[X, ...] takes one or more values (or, with `repeat=True`, one value
per use of the flag); bool is a switch (a variable says 1/true/yes/on or 0/false/no/off). A plain
field is not a flag. A field's own bounds are declared on it (`minimum=`, `maximum=`, `above=`, `choices=`)
and checked by `check_bounds`, which the dataclass's __post_init__ calls with the checks that span
several fields, so Python callers meet them too.

    parser: add_flags(parser, TrainSettings)        # typed flags; argparse defaults = the fields'
    args:   from_args(TrainSettings, args)          # the dataclass, built (and checked) from them

With an environment prefix (the server's LSTMSERVE_), each flag defaults to its variable, then to the
field's default; flags and variables are read as text and converted here, so a bad value of either
raises `error` naming its source.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

_KINDS = (int, float, str, bool)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    metavar: str | None = None,
    repeat: bool = False,
    choices: tuple[str, ...] | None = None,
    required: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> Any:
    """A dataclass field that is also a flag; `help` is its one line, in --help and the docs.

    minimum, maximum: the least and greatest value allowed; above: a value it must exceed (0: it must
    be positive); checked, with `choices`, by check_bounds."""
    metadata = {
        "help": help,
        "flag": flag,
        "metavar": metavar,
        "repeat": repeat,
        "choices": choices,
        "required": required,
        "minimum": minimum,
        "maximum": maximum,
        "above": above,
    }
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Flag:
    name: str  # the field's
    flag: str  # --name-with-dashes, unless the field named another
    kind: type  # of the value, or of each value when many
    many: bool
    repeat: bool
    default: Any  # dataclasses.MISSING for a field without one
    help: str
    metavar: str | None
    choices: tuple[str, ...] | None = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None

    def env(self, prefix: str) -> str:
        return prefix + self.name.upper()

    def out_of_bounds(self, value: Any) -> str | None:
        """What is wrong with `value` by this flag's own bounds and choices ("must be ..."), or None."""
        low, high = self.minimum, self.maximum
        if self.choices is not None and value not in self.choices:
            return f"must be {_either(self.choices)}, got {value!r}"
        if low is not None and high is not None and not low <= value <= high:
            return f"must be {low}-{high}, got {value}"
        if low is not None and value < low:
            return (
                f"must not be negative, got {value}" if low == 0 else f"must be at least {low}, got {value}"
            )
        if high is not None and value > high:
            return f"must be at most {high}, got {value}"
        if self.above is not None and value <= self.above:
            wanted = "positive" if self.above == 0 else f"more than {self.above}"
            return f"must be {wanted}, got {value}"
        return None

    def shown_default(self) -> str:
        """The default as --help and the docs print it (a tuple as the list argparse would hold)."""
        if self.default is dataclasses.MISSING:
            return "None"
        if self.kind is bool:
            return "on" if self.default else "off"  # as a flag or variable takes it (on/off, 1/0, ...)
        return str(list(self.default) if self.many else self.default)


def flags(cls: type) -> list[Flag]:
    """The flags of a settings dataclass, in field order."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        if "help" not in field.metadata:
            continue
        kind, many = _kind(hints[field.name])
        flag = field.metadata["flag"] or "--" + field.name.replace("_", "-")
        choices = field.metadata.get("choices")
        metavar = field.metadata["metavar"] or (None if choices else flag[2:].replace("-", "_").upper())
        found.append(
            Flag(
                field.name,
                flag,
                kind,
                many,
                field.metadata["repeat"],
                field.default,
                field.metadata["help"],
                metavar,
                choices,
                field.metadata.get("required", False),
                field.metadata.get("minimum"),
                field.metadata.get("maximum"),
                field.metadata.get("above"),
            )
        )
    return found


def flag_of(cls: Any, name: str) -> str:
    """The flag of a field, for messages a user of the CLI can act on."""
    return next(flag.flag for flag in flags(cls if isinstance(cls, type) else type(cls)) if flag.name == name)


def check_bounds(
    settings: Any, error: Callable[[str], Exception], named: Callable[[str], str] | None = None
) -> None:
    """Raise `error` for the first field, in field order, outside its own bounds or choices; `named`
    gives a field's name as the message shows it (default: its flag)."""
    for flag in flags(type(settings)):
        value = getattr(settings, flag.name)
        for item in value if flag.many else (value,):
            problem = None if item is None else flag.out_of_bounds(item)
            if problem is not None:
                raise error(f"{named(flag.name) if named else flag.flag} {problem}")


def add_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    names: Iterable[str] | None = None,
    *,
    env_prefix: str | None = None,
    unset: Iterable[str] = (),
) -> None:
    """Add a dataclass's flags (or those in `names`, in field order).

    "%(default)s" in a help reads the field's default. Flags in `unset` default to None, so the CLI can
    tell a flag left out (the bench's flags that the soak reads with other defaults).
    """
    chosen = None if names is None else set(names)
    unset = set(unset)
    for flag in flags(cls):
        if chosen is not None and flag.name not in chosen:
            continue
        help = flag.help.replace("%(default)s", flag.shown_default())
        if env_prefix is not None:  # text, converted by from_args, which then reads the variable
            help = f"{help} (env {flag.env(env_prefix)}, default {flag.shown_default()})"
            metavar = "on|off" if flag.kind is bool and flag.metavar is None else flag.metavar
            parser.add_argument(flag.flag, dest=flag.name, default=None, metavar=metavar, help=help)
            continue
        default = None if flag.default is dataclasses.MISSING or flag.name in unset else flag.default
        if flag.kind is bool:
            parser.add_argument(flag.flag, dest=flag.name, action="store_true", default=default, help=help)
            continue
        options: dict[str, Any] = {"type": flag.kind, "required": flag.required}
        if flag.choices is not None:
            options["choices"] = flag.choices
        if flag.repeat:
            options["action"] = "append"
        elif flag.many:
            options["nargs"] = "+"
        if flag.many and default is not None:
            default = list(default)  # a fresh list: argparse appends to the default it is given
        parser.add_argument(
            flag.flag, dest=flag.name, default=default, metavar=flag.metavar, help=help, **options
        )


def from_args(
    cls: type,
    args: argparse.Namespace,
    *,
    env_prefix: str | None = None,
    environ: Mapping[str, str] | None = None,
    error: Callable[[str], Exception] = ValueError,
) -> Any:
    """The dataclass from parsed flags (and variables, with a prefix); left-out flags keep its defaults."""
    if env_prefix is not None and environ is None:
        environ = os.environ
    values: dict[str, Any] = {}
    for flag in flags(cls):
        raw, source = getattr(args, flag.name, None), flag.flag
        if raw is None and env_prefix is not None and environ is not None and flag.env(env_prefix) in environ:
            raw, source = environ[flag.env(env_prefix)], flag.env(env_prefix)
        if raw is None:
            continue
        try:
            if flag.many:
                values[flag.name] = tuple(_convert(flag.kind, item) for item in _items(raw))
            else:
                values[flag.name] = _convert(flag.kind, raw)
        except ValueError:
            kind = f"on or off ({'/'.join(_TRUE)} or {'/'.join(_FALSE[:-1])})" if flag.kind is bool else None
            raise error(f"{source}={raw!r} is not {kind or 'a valid ' + flag.kind.__name__}") from None
    return cls(**values)


def markdown_table(cls: type, env_prefix: str) -> str:
    """| flag | environment variable | default | what it does |, one row per flag."""
    rows = ["| flag | environment variable | default | what it does |", "|---|---|---|---|"]
    for flag in flags(cls):
        help = flag.help.replace("%(default)s", flag.shown_default()).replace("|", "\\|")
        rows.append(f"| `{flag.flag}` | `{flag.env(env_prefix)}` | {flag.shown_default()} | {help} |")
    return "\n".join(rows) + "\n"


def _kind(hint: Any) -> tuple[type, bool]:
    """(the type of each value, whether there are many) from a field's annotation."""
    if typing.get_origin(hint) is tuple:
        kind, many = typing.get_args(hint)[0], True
    else:
        kinds = [arg for arg in typing.get_args(hint) if arg is not type(None)]  # X | None
        kind, many = (kinds[0] if len(kinds) == 1 else hint), False
    if kind not in _KINDS:
        raise TypeError(f"a setting must be int, float, str, bool, X | None or tuple[X, ...], not {hint}")
    return kind, many


def _either(choices: tuple[str, ...]) -> str:
    """("a", "b", "c") as "a, b or c"."""
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


def _items(raw: Any) -> list[Any]:
    return raw.split() if isinstance(raw, str) else list(raw)  # a variable holds them space-separated


def _convert(kind: type, value: Any) -> Any:
    if kind is bool and isinstance(value, str):
        if value.strip().lower() not in _TRUE + _FALSE:
            raise ValueError(value)
        return value.strip().lower() in _TRUE
    return kind(value) if isinstance(value, str) else value
