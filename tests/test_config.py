"""lstmserve.config: one dataclass declares a stage's flags, their types, defaults, help and checks."""

import argparse
import re
from dataclasses import MISSING, dataclass

import pytest

from lstmserve.config import add_flags, check_bounds, flag_of, flags, from_args, markdown_table, setting


@dataclass(frozen=True)
class Options:
    name: str = setting("x", "a name (default %(default)s)")
    sizes: tuple[int, ...] = setting((1, 2), "sizes", metavar="N")
    rate: float = setting(0.5, "a rate", flag="--lr")
    limit: int | None = setting(None, "at most this many")
    extra: tuple[str, ...] = setting((), "one per use", flag="--extra-arg", repeat=True)
    hidden: int = 3
    """Not a flag: a plain field."""

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"{flag_of(self, 'rate')} must be positive, got {self.rate}")


def parse(argv, **kwargs):
    parser = argparse.ArgumentParser()
    add_flags(parser, Options, **kwargs)
    return parser, parser.parse_args(argv)


def test_flags_come_from_the_fields():
    assert [(f.flag, f.kind, f.many) for f in flags(Options)] == [
        ("--name", str, False),
        ("--sizes", int, True),
        ("--lr", float, False),
        ("--limit", int, False),
        ("--extra-arg", str, True),
    ]


def test_parsed_flags_build_the_dataclass():
    _, args = parse(["--sizes", "3", "4", "--lr", "0.1", "--extra-arg", "a", "--extra-arg=--b"])
    assert from_args(Options, args) == Options(sizes=(3, 4), rate=0.1, extra=("a", "--b"))
    assert from_args(Options, parse([])[1]) == Options()


def test_checks_run_in_the_dataclass_and_name_the_flag():
    with pytest.raises(ValueError, match="--lr must be positive, got -1.0"):
        from_args(Options, parse(["--lr", "-1"])[1])
    with pytest.raises(ValueError, match="--lr must be positive"):
        Options(rate=0)


def test_help_shows_the_fields_defaults_even_for_unset_flags():
    parser, args = parse([], unset=("name",))
    assert args.name is None and from_args(Options, args).name == "x"
    assert "a name (default x)" in parser.format_help()
    assert "--sizes N [N ...]" in parser.format_help()


def test_environment_fills_what_flags_leave_out():
    parser = argparse.ArgumentParser()
    add_flags(parser, Options, env_prefix="T_")
    args = parser.parse_args(["--lr", "2"])
    built = from_args(Options, args, env_prefix="T_", environ={"T_LR": "9", "T_SIZES": "5 6", "T_LIMIT": "7"})
    assert built == Options(rate=2.0, sizes=(5, 6), limit=7)
    assert "(env T_LIMIT, default None)" in parser.format_help()
    with pytest.raises(KeyError, match="T_LIMIT='many' is not a valid int"):
        from_args(Options, args, env_prefix="T_", environ={"T_LIMIT": "many"}, error=KeyError)


def test_markdown_table():
    assert markdown_table(Options, "T_").splitlines()[2] == "| `--name` | `T_NAME` | x | a name (default x) |"


def test_unsupported_types_are_refused_where_declared():
    @dataclass
    class Bad:
        ratio: complex = setting(0j, "not a kind a flag takes")

    with pytest.raises(TypeError, match="must be int, float, str, bool"):
        flags(Bad)


def test_a_bool_is_a_switch_and_a_variable_says_yes_or_no():
    @dataclass(frozen=True)
    class Switch:
        loud: bool = setting(False, "a switch")

    parser = argparse.ArgumentParser()
    add_flags(parser, Switch)
    assert from_args(Switch, parser.parse_args(["--loud"])) == Switch(True)
    assert from_args(Switch, parser.parse_args([])) == Switch(False)
    parser = argparse.ArgumentParser()
    add_flags(parser, Switch, env_prefix="T_")
    args = parser.parse_args([])
    assert from_args(Switch, args, env_prefix="T_", environ={"T_LOUD": "on"}) == Switch(True)
    assert from_args(Switch, args, env_prefix="T_", environ={"T_LOUD": "No"}) == Switch(False)
    words = r"\(1/true/yes/on or 0/false/no/off\)"
    with pytest.raises(ValueError, match=rf"T_LOUD='maybe' is not on or off {words}"):
        from_args(Switch, args, env_prefix="T_", environ={"T_LOUD": "maybe"})


def test_a_field_without_default_is_a_flag_left_out_as_none():
    @dataclass
    class Required:
        minutes: float = setting(MISSING, "how long")

    parser = argparse.ArgumentParser()
    add_flags(parser, Required)
    assert parser.parse_args([]).minutes is None
    assert from_args(Required, parser.parse_args(["--minutes", "2"])) == Required(2.0)


@dataclass(frozen=True)
class Bounded:
    port: int = setting(1, "a port", minimum=0, maximum=65535)
    threads: int = setting(1, "threads", minimum=1)
    delay: float = setting(0.0, "a delay", minimum=0)
    timeout: float = setting(1.0, "a timeout", above=0)
    sizes: tuple[int, ...] = setting((1,), "sizes", minimum=1)
    cap: int | None = setting(None, "a cap, or none", minimum=1)
    mode: str = setting("a", "a mode", choices=("a", "b", "c"))

    def __post_init__(self) -> None:
        check_bounds(self, ValueError)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"port": 70000}, "--port must be 0-65535, got 70000"),
        ({"port": -1}, "--port must be 0-65535, got -1"),
        ({"threads": 0}, "--threads must be at least 1, got 0"),
        ({"delay": -0.5}, "--delay must not be negative, got -0.5"),
        ({"timeout": 0.0}, "--timeout must be positive, got 0.0"),
        ({"sizes": (2, 0)}, "--sizes must be at least 1, got 0"),
        ({"mode": "d"}, "--mode must be a, b or c, got 'd'"),
        ({"threads": 0, "delay": -1.0}, "--threads must be at least 1"),  # the first, in field order
    ],
)
def test_a_fields_own_bounds_are_checked_from_its_declaration(values, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        Bounded(**values)


def test_values_on_their_bounds_and_none_pass():
    Bounded(port=0, threads=1, delay=0.0, timeout=1e-9, sizes=(1, 5), cap=None, mode="c")
    Bounded(port=65535)
