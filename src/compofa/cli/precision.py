"""The precision options of the commands that time subnets (`profile`, `search --latency device:`,
`lut build`): ``--precision``, with ``--calibration`` and ``--calibration-images`` for int8 models."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import click

from compofa.cli.common import OptionError
from compofa.devices.base import PRECISIONS

if TYPE_CHECKING:
    from compofa.devices.base import Quantization

F = TypeVar("F", bound=Callable[..., object])

#: Calibration images drawn unless --calibration-images says otherwise (`compofa.sources.calibration`).
DEFAULT_CALIBRATION_IMAGES = 256


#: What --precision says on the commands that time subnets.
TIMING_HELP = ("Precision the device computes in; int8 times the subnets quantized (static, QDQ, per-channel "
               "weights) after calibration on --calibration images.")


def precision_option(help: str = TIMING_HELP) -> Callable[[F], F]:
    """``--precision``: every precision there is (each backend or job refuses those it cannot, in one line)."""
    return click.option("--precision", default="fp32", show_default=True, type=click.Choice(PRECISIONS), help=help)


def calibration_options(function: F) -> F:
    """``--calibration DIR`` and ``--calibration-images N``: the real images int8 models are calibrated on."""
    function = click.option(
        "--calibration-images", default=DEFAULT_CALIBRATION_IMAGES, show_default=True,
        type=click.IntRange(min=1), help="How many of the --calibration images (a seeded subset).")(function)
    return click.option(
        "--calibration", type=click.Path(), metavar="DIR",
        help="Images int8 models are calibrated on: an ImageFolder (DIR/train/<class>/..., as `compofa digits` "
             "writes it) or a folder of images.")(function)


def quantization(precision: str, calibration: str | None, images: int, resolutions: Sequence[int],
                 seed: int = 0) -> Quantization | None:
    """The int8 recipe the options ask for (None for another precision), with its calibration images drawn and
    checked now, before anything is written: they must exist, decode and be large enough for `resolutions`."""
    from compofa.devices.base import Quantization
    from compofa.sources.calibration import calibration_set

    if precision != "int8":
        if calibration is not None:
            raise OptionError(f"--calibration calibrates int8 models; at precision {precision} it does nothing: "
                              "drop it, or give --precision int8", option="calibration")
        return None
    if calibration is None:
        raise OptionError("int8 models are calibrated on real images: give --calibration DIR (a folder of images, "
                          "or a dataset such as `compofa digits -o DIR` writes)", option="precision")
    chosen = calibration_set(calibration, images, seed)
    chosen.check_resolution(max(resolutions))
    return Quantization(str(calibration), images, seed, chosen.digest)
