"""The options several commands share: one spelling, one meaning, one help text, one type and one default each.

Every command builds these options from the `Idea` below, so `--batch` says the
same thing in `profile`, `search`, `export`, `train` and `eval`, and
tests/test_cli_vocabulary.py walks every command to keep it so. An idea whose
natural default depends on the command's work (the resolutions a `profile`
measures by default are not those a `subnet enumerate` lists) says so with
`per_command_default`, and each command names its default in `--help`.

An old spelling stays accepted as a hidden alias that says the new one on
stderr, so scripts keep working while `--help` shows one vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from compofa.devices.base import PRECISIONS
from compofa.space import DEFAULT_SPACE, list_spaces

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Idea:
    """One option's meaning: its flags, the Python name commands receive it as, its help, type and default.

    Attributes:
        flags: the spellings shown in --help (``("-o", "--output")``).
        name: the keyword argument a command function receives.
        help: the one help text, identical in every command.
        type: the click type (a `click.Choice` where the set of values is known, so --help lists it and the
            shell completes it).
        default: the default value, the same in every command unless `per_command_default`.
        shown_default: what --help says the default is, where the value alone would not say it (None: the value).
        per_command_default: the default depends on what the command does; each command passes its own.
        old_spellings: earlier flags of the same idea, accepted hidden with a deprecation note on stderr.
        is_flag, metavar: as in `click.option`.
        complete: what the shell completes a value with, where `type` does not know.
    """

    flags: tuple[str, ...]
    name: str
    help: str
    type: Any = None
    default: Any = None
    shown_default: str | None = None
    per_command_default: bool = False
    old_spellings: tuple[str, ...] = ()
    is_flag: bool = False
    metavar: str | None = None
    complete: Callable[[click.Context, click.Parameter, str], list[str]] | None = None

    @property
    def flag(self) -> str:
        """The long flag (``--output``)."""
        return max(self.flags, key=len)


class SharedOption(click.Option):
    """An option built from an `Idea` (the vocabulary test knows shared options by this class)."""

    def __init__(self, *args: Any, idea: Idea, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idea = idea


class OldSpelling(click.Option):
    """A hidden earlier flag of an idea: it fills the idea's argument, and using it says the new flag on stderr.

    It parses into a name of its own, so that a command can tell which spelling was typed, and hands its value
    to the idea's argument (click keeps a value from the command line over a default, in either order)."""

    def __init__(self, *args: Any, idea: Idea, **kwargs: Any) -> None:
        super().__init__(*args, expose_value=False, **kwargs)
        self.idea = idea

    def handle_parse_result(self, ctx: click.Context, opts: Any, args: list[str]) -> tuple[Any, list[str]]:
        value, args = super().handle_parse_result(ctx, opts, args)
        if ctx.get_parameter_source(self.name or "") is ParameterSource.COMMANDLINE:
            flag = self.idea.flag
            if ctx.get_parameter_source(self.idea.name) is ParameterSource.COMMANDLINE:
                raise click.UsageError(f"{self.opts[0]} is the old spelling of {flag}: give {flag} once", ctx)
            click.echo(f"note: {self.opts[0]} is deprecated; use {flag}", err=True)
            ctx.params[self.idea.name] = value
            ctx.set_parameter_source(self.idea.name, ParameterSource.COMMANDLINE)
            ctx.meta.setdefault("compofa.old_spellings", {})[self.idea.name] = self.opts[0]
        return value, args


def _given_once(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Refuse an idea given under both its flag and an old spelling (the old one parsed first)."""
    old = ctx.meta.get("compofa.old_spellings", {}).get(param.name)
    if old is not None and ctx.get_parameter_source(param.name or "") is ParameterSource.COMMANDLINE:
        flag = param.idea.flag  # type: ignore[attr-defined]
        raise click.UsageError(f"{old} is the old spelling of {flag}: give {flag} once", ctx)
    return value


def option(idea: Idea, *, default: Any = ..., shown_default: str | None = None, multiple: bool = False,
           required: bool = False, old_spellings: tuple[str, ...] = ()) -> Callable[[F], F]:
    """`idea` as a click option, with its old spellings and any this command had (`old_spellings`); `default` only
    where the idea's depends on the command."""
    if default is not ... and not idea.per_command_default:
        raise ValueError(f"{idea.flag} has one default everywhere; it cannot be changed per command")
    value = idea.default if default is ... else default
    shown = shown_default or idea.shown_default
    show: bool | str = shown if shown else value not in (None, False, ())
    common: dict[str, Any] = {"type": idea.type, "multiple": multiple, "callback": _given_once, "idea": idea,
                              "shell_complete": idea.complete}
    if idea.is_flag:
        common = {"is_flag": True, "callback": _given_once, "idea": idea}

    def decorate(function: F) -> F:
        # the old spellings go after the flag: --help lists the flag, the parser knows both
        for old in reversed((*idea.old_spellings, *old_spellings)):
            name = "old_" + old.lstrip("-").replace("-", "_")
            function = click.option(old, name, cls=OldSpelling, hidden=True, help=idea.help, type=idea.type,
                                    multiple=multiple, idea=idea)(function)
        return click.option(*idea.flags, idea.name, cls=SharedOption, help=idea.help, show_default=show,
                            required=required, metavar=idea.metavar,
                            **({"default": value} if value is not None and not multiple else {}),
                            **common)(function)

    return decorate


#: Every design space's name: --space lists them in --help, completes them and refuses any other in one line.
SPACE_NAMES = tuple(space.name for space in list_spaces())


def _complete_devices(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from compofa.devices.registry import backend_names

    return [name for name in (*backend_names(), "lut:note10", "ssh://", "adb://") if name.startswith(incomplete)]


SPACE = Idea(("--space",), "space", "Design space (see `compofa spaces`).", click.Choice(SPACE_NAMES),
             DEFAULT_SPACE, per_command_default=True)
RESOLUTION = Idea(
    ("--resolution",), "resolution",
    "Input resolutions: values and ranges START:STOP[:STEP] (step 4 unless given), comma-separated, or all (the "
    "space's search resolutions, 160..224 step 4); a command about one subnet takes one value.",
    click.STRING, per_command_default=True, metavar="LIST")
WIDTH = Idea(("--width",), "width", "Width multiplier of the supernet.", click.FLOAT, shown_default="the family's",
             per_command_default=True)
BATCH = Idea(("--batch",), "batch", "Batch size: images per inference (per step when training).",
             click.IntRange(min=1), per_command_default=True, old_spellings=("--batch-size",))
THREADS = Idea(("--threads",), "threads", "Intra-op threads (CPU backends).", click.IntRange(min=1), 1)
BACKEND_OPTIONS = Idea(("-O", "--option"), "options", "Backend option NAME=VALUE (repeatable; see `compofa devices`).",
                       click.STRING, metavar="NAME=VALUE")
DEVICE = Idea(
    ("--device",), "device",
    "Timing backend (see `compofa devices`): NAME, lut:NAME, ssh://[USER@]HOST/NAME or adb://SERIAL/NAME.",
    click.STRING, shown_default="onnxruntime", complete=_complete_devices)
TORCH_DEVICE = Idea(("--torch-device",), "torch_device", "PyTorch device: cpu, cuda or cuda:N.", click.STRING, "cpu",
                    old_spellings=("--device",))
DEVICE_ID = Idea(("--device-id",), "device_id",
                 "Which device of a table holding several (the ids `compofa table show` lists).", click.INT)
SEED = Idea(("--seed",), "seed", "Random seed: the same seed gives the same result (--seed $RANDOM for a fresh draw).",
            click.INT, 0)
MIN_ROUNDS = Idea(("--min-rounds",), "min_rounds",
                  "Rounds (fresh sessions) per subnet or layer, at least; never more than --max-rounds.",
                  click.IntRange(min=1), 3)
MAX_ROUNDS = Idea(("--max-rounds",), "max_rounds",
                  "Rounds (fresh sessions) per subnet or layer, at most (a lower --min-rounds follows it).",
                  click.IntRange(min=1), 8)
# plain floats: the profiler's own check says what is wrong with 0, -1 or nan in one line
ROUND_SECONDS = Idea(("--round-seconds",), "round_seconds", "Timed inference per subnet or layer and round (s).",
                     click.FLOAT, 0.4)
TARGET_CI = Idea(("--target-ci",), "target_ci",
                 "Stop measuring an item once its median's 95% CI half-width is this fraction of it (0.01: +-1%).",
                 click.FLOAT, 0.01)
PRECISION = Idea(("--precision",), "precision",
                 "Numeric precision; int8 quantizes the subnets (static, QDQ, per-channel weights) after "
                 "calibration on real images.", click.Choice(PRECISIONS), "fp32", per_command_default=True)
CALIBRATION = Idea(
    ("--calibration",), "calibration",
    "Images int8 models are calibrated on: an ImageFolder (DIR/train/<class>/..., as `compofa digits` writes it) "
    "or a folder of images.", click.Path(), metavar="DIR")
#: Calibration images drawn unless --calibration-images says otherwise (`compofa.sources.calibration`).
DEFAULT_CALIBRATION_IMAGES = 256
CALIBRATION_IMAGES = Idea(("--calibration-images",), "calibration_images",
                          "How many images int8 models are calibrated on (a seeded subset of the calibration images).",
                          click.IntRange(min=1), DEFAULT_CALIBRATION_IMAGES)
CHECKPOINT = Idea(("--checkpoint",), "checkpoint", "Supernet weights: a compofa, OFA or CompOFA checkpoint.",
                  click.Path(dir_okay=False))
ACCURACY = Idea(("--accuracy",), "accuracy_text",
                "Accuracy source: predictor (the shipped OFA predictor), predictor:PATH or table:PATH.",
                click.STRING, "predictor")
WORKERS = Idea(("--workers",), "workers", "Data-loading processes.", click.IntRange(min=0), 2)
OUTPUT_FILE = Idea(("-o", "--output"), "output", "File to write; - writes it to standard output.",
                   click.Path(dir_okay=False, allow_dash=True), per_command_default=True)
OUTPUT_FOLDER = Idea(("-o", "--output"), "output", "Folder to write into (created if missing).",
                     click.Path(file_okay=False), per_command_default=True)
FILE_FORMAT = Idea(("--format",), "file_format", "Format of the -o file (default: its extension's; json for -).",
                   click.Choice(("json", "csv")))
QUIET = Idea(("--quiet",), "quiet", "No progress bar or progress messages.", is_flag=True, default=False)
JSON = Idea(("--json",), "as_json", "Print JSON instead of text.", is_flag=True, default=False)

#: Every shared idea, for the vocabulary test and the README's table.
IDEAS = (SPACE, RESOLUTION, WIDTH, BATCH, THREADS, BACKEND_OPTIONS, DEVICE, TORCH_DEVICE, DEVICE_ID, SEED,
         MIN_ROUNDS, MAX_ROUNDS, ROUND_SECONDS, TARGET_CI, PRECISION, CALIBRATION, CALIBRATION_IMAGES, CHECKPOINT,
         ACCURACY, WORKERS, OUTPUT_FILE, OUTPUT_FOLDER, FILE_FORMAT, QUIET, JSON)


def rounds_options(function: F) -> F:
    """``--min-rounds``, ``--max-rounds``, ``--round-seconds`` and ``--target-ci``: how long each item is timed."""
    for idea in (TARGET_CI, ROUND_SECONDS, MAX_ROUNDS, MIN_ROUNDS):
        function = option(idea)(function)
    return function


def calibration_options(function: F) -> F:
    """``--calibration DIR`` and ``--calibration-images N``: the real images int8 models are calibrated on."""
    return option(CALIBRATION)(option(CALIBRATION_IMAGES)(function))


def rounds(min_rounds: int, max_rounds: int) -> tuple[int, int]:
    """The rounds asked for: a --max-rounds below the default --min-rounds lowers it too; both given and
    contradicting each other is one line naming both."""
    from compofa.cli.common import OptionError

    if min_rounds <= max_rounds:
        return min_rounds, max_rounds
    context = click.get_current_context(silent=True)
    given = context is not None and context.get_parameter_source("min_rounds") is ParameterSource.COMMANDLINE
    if not given:
        return max_rounds, max_rounds
    raise OptionError(f"--min-rounds {min_rounds} is more than --max-rounds {max_rounds}: lower --min-rounds or "
                      "raise --max-rounds", option="min_rounds")


__all__ = ["IDEAS", "Idea", "OldSpelling", "SharedOption", "calibration_options", "option",
           "rounds", "rounds_options"]
