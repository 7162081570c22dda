"""What ``--precision``, ``--calibration`` and ``--calibration-images`` (`compofa.cli.options`) ask of the commands
that time subnets (`profile`, `search --latency device:`): the int8 recipe, with its images checked up front."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from compofa.cli.common import OptionError

if TYPE_CHECKING:
    from compofa.devices.base import Quantization


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
