"""What every command shares: error reporting, lazily loaded subcommands, spec arguments, output helpers."""

from __future__ import annotations

import errno
import importlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import click

from compofa.errors import CompofaError, SpecError
from compofa.fileio import environment_message

if TYPE_CHECKING:
    from compofa.space import DesignSpace, SubnetSpec

#: Exit codes: bad input or a refused operation; interrupted by the user.
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

class CompofaGroup(click.Group):
    """A click group that reports every error in one line on stderr, never a traceback or usage text."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        if args is None:  # run as the program itself, not called from Python (whose signals stay its own)
            interrupt_on_termination()
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as error:  # usage errors: one line, as the library's are
            message = " ".join(error.format_message().split())
            context = getattr(error, "ctx", None)
            hint = f" (see `{context.command_path} --help`)" if isinstance(error, click.UsageError) and context else ""
            click.echo(f"error: {message}{hint}", err=True)
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CompofaError as error:
            fail(str(error) + _flag_hint(ctx, getattr(error, "option", ())))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except OSError as error:
            if error.errno == errno.EPIPE:  # the reader went away (`| head`): click quiets it
                raise
            message = environment_message(error)
            if message is None:
                raise_internal(error)
            fail(message)
        except Exception as error:  # noqa: BLE001 - a bug: still one line, with a way to see more
            raise_internal(error)


@dataclass(frozen=True)
class LazyCommand:
    """Where a subcommand lives ("module:attribute") and its short help, known without importing it."""

    target: str
    help: str

    def load(self) -> click.Command:
        module, _, attribute = self.target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command), f"{self.target} is not a click command"
        return command


class LazyGroup(CompofaGroup):
    """A group whose subcommands are imported only when one is run (or asked for its own --help).

    Importing a command's module pulls in what it needs (numpy, onnx, the
    store, search), which costs seconds when it is torch; `compofa --help` and
    `compofa spaces` must not pay for `compofa train`. The listing uses the
    registry's short help, which a test keeps equal to each command's own.
    """

    def __init__(self, *args: Any, lazy: dict[str, LazyCommand], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(self.lazy[cmd_name].load(), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)  # as click lays its listing out
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            # a stand-in built from the registry's text shortens it exactly as click shortens the real one
            command = loaded if loaded is not None else click.Command(name, help=self.lazy[name].help)
            if not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def interrupt_on_termination() -> None:
    """`kill` (SIGTERM) and a closed terminal or dropped connection (SIGHUP) stop work the way Ctrl-C does:
    the measurement in flight is abandoned, what is finished is closed properly (the table's lock and WAL
    tidied), and the command says how to resume. A signal the caller chose to ignore (nohup) stays ignored."""
    def interrupt(number: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(number).name)

    for number in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(number) is signal.SIG_DFL:
            signal.signal(number, interrupt)


def _flag_hint(ctx: click.Context, names: tuple[str, ...]) -> str:
    """`` (change --flag)`` for the settings an error names, as flags of the command that ran ("" if none)."""
    command = ctx.command
    if isinstance(command, click.Group) and ctx.invoked_subcommand:
        command = command.get_command(ctx, ctx.invoked_subcommand) or command
    flags = []
    for name in names:
        for param in command.params:
            if isinstance(param, click.Option) and (param.name == name or f"--{name.replace('_', '-')}" in param.opts):
                # a hidden old spelling (train's --device) points to the flag it became (--torch-device)
                idea = getattr(param, "idea", None) if param.hidden else None
                flags.append(idea.flag if idea is not None else max(param.opts, key=len))
                break
    return f" (change {' or '.join(flags)})" if flags else ""


class OptionError(CompofaError):
    """A command-line value that cannot work as given; the message names the flag to change."""


def raise_internal(error: Exception) -> NoReturn:
    """Report a bug in one line (the traceback with COMPOFA_DEBUG=1) and exit 1."""
    if os.environ.get("COMPOFA_DEBUG"):
        raise error
    message = " ".join(str(error).split())
    click.echo(f"error: internal error ({type(error).__name__}: {message}); "
               "rerun with COMPOFA_DEBUG=1 for the traceback and report it", err=True)
    sys.exit(1)


def fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def parse_int_list(text: str | None, what: str) -> tuple[int, ...] | None:
    """``"160,192,224"`` -> (160, 192, 224)."""
    if text is None:
        return None
    try:
        values = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise SpecError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise SpecError(f"{what} is empty")
    return values


_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str | None, what: str = "--time-budget") -> float | None:
    """``90``, ``90s``, ``20m``, ``1h30m`` or ``1.5h`` -> seconds (a positive number)."""
    if text is None:
        return None
    import re

    compact = text.strip().lower().replace(" ", "")
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms]?)", compact)
    if not compact or "".join(number + unit for number, unit in parts) != compact or \
            any(not unit for _, unit in parts[:-1]):
        raise OptionError(f"{what} takes a duration such as 90s, 20m or 1h30m, not {text!r}",
                          option=what.lstrip("-").replace("-", "_"))
    seconds = sum(float(number) * _DURATION_UNITS[unit or "s"] for number, unit in parts)
    if seconds <= 0:
        raise OptionError(f"{what} must be longer than 0, got {text!r}", option=what.lstrip("-").replace("-", "_"))
    return seconds


def parse_resolutions(text: str | None, space: DesignSpace, what: str = "--resolution") -> tuple[int, ...] | None:
    """``--resolution``: a comma-separated list of resolutions, ranges ``START:STOP[:STEP]`` (both ends included;
    the step defaults to 4) and ``all`` (the space's search resolutions, 160..224 step 4 for the MobileNetV3
    and ProxylessNAS spaces), each allowed in `space`; duplicates are dropped, the order kept."""
    if text is None:
        return None
    values: list[int] = []
    for token in (part.strip() for part in text.split(",")):
        if not token:
            continue
        if token == "all":
            values += space.search_resolutions
            continue
        try:
            numbers = [int(part) for part in token.split(":")]
        except ValueError:
            raise SpecError(f"{what} takes resolutions (224), ranges (160:224:4) and all, comma-separated, "
                            f"not {token!r}") from None
        if len(numbers) == 1:
            values.append(numbers[0])
        elif len(numbers) in (2, 3):
            start, stop, step = numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else 4
            if step <= 0 or stop < start:
                raise SpecError(f"{what} range {token!r} must go up: START:STOP:STEP with START <= STOP and "
                                "STEP > 0")
            values += range(start, stop + 1, step)
        else:
            raise SpecError(f"{what} range {token!r} has too many parts: START:STOP[:STEP]")
    if not values:
        raise SpecError(f"{what} is empty")
    for value in values:
        space.check_resolution(value)
    return tuple(dict.fromkeys(values))


def single_resolution(text: str | None, space: DesignSpace) -> int | None:
    """``--resolution`` where a command is about one subnet: the same syntax, one value."""
    values = parse_resolutions(text, space)
    if values is None:
        return None
    if len(values) > 1:
        raise OptionError(f"--resolution {text} names {len(values)} resolutions; this command takes one (such as "
                          f"{values[-1]})", option="resolution")
    return values[0]


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 entry``, ``2 entries``, ``0 subnets``."""
    if count == 1:
        return f"1 {singular}"
    if plural_form is None:
        plural_form = singular[:-1] + "ies" if singular.endswith("y") and singular[-2:-1] not in "aeiou" \
            else singular + "s"
    return f"{count} {plural_form}"


def spec_argument(text: str, space: str | None, resolution: int | None) -> SubnetSpec:
    """A SPEC argument: canonical text, OFA dict JSON, or @file.json."""
    from compofa.space import get_space, read_spec

    if space is not None:
        get_space(space)  # an unknown --space is reported as such, not as a spec error
    return read_spec(text, space=space, resolution=resolution)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def echo_rows(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    """A plain aligned table (stays readable when piped)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    """The device options of repeated ``-O NAME=VALUE`` flags."""
    from compofa.devices.base import DeviceOptionError

    options = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise DeviceOptionError(f"-O takes NAME=VALUE, got {pair!r}")
        options[name] = value
    return options
