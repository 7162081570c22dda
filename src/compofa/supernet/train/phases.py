"""Training phases as data: one config per phase, and the paper's schedules as presets.

A phase trains the supernet for some epochs on subnets drawn from a design
space, optionally narrowed to some kernel sizes, depths and expand ratios (how
OFA's progressive shrinking unlocks one dimension at a time). Figures are the
paper's (Table 1, Table 3, section 5.1) and the reference training script's:
learning rates are given per 256 images and scaled linearly with the global
batch; warm-up runs at the phase's base rate; distillation (soft cross-entropy
to the full network, ratio 1) in every phase after the teacher.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from compofa.errors import CompofaError
from compofa.space import TRAIN_RESOLUTIONS, get_space

#: What a phase trains: the full network only, all of a space's subnets from the start
#: (CompOFA's compound phase), or a narrowed part of it (a progressive-shrinking phase).
PHASE_KINDS = ("teacher", "compound", "progressive")


#: A phase's name is its folder's: one path component that stays inside the run folder.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


class PhaseConfigError(CompofaError):
    """A phase config that cannot be used (unknown keys, bad values, unreadable file)."""


@dataclass(frozen=True)
class Phase:
    """One training phase.

    Attributes:
        name: shown in logs and used for checkpoint folders.
        kind: one of `PHASE_KINDS`.
        space: the design space subnets are drawn from.
        epochs: training epochs, warm-up included.
        lr_per_256: initial learning rate per 256 images (cosine decay to 0).
        warmup_epochs: epochs of linear warm-up to the initial rate, at the start.
        subnets_per_step: subnets drawn per batch, their gradients summed before
            one optimizer step (the paper's N_sample).
        kernel_sizes, depths, expand_ratios: the choices this phase unlocks
            (None: all of the space's).
        sort_channels: re-sort every block's middle channels by importance before
            the phase starts (OFA does so before elastic width).
        distill: weight of the soft cross-entropy to the full network's outputs
            (0: no teacher).
        label_smoothing, momentum, nesterov, weight_decay: the optimizer and loss;
            weight decay spares BatchNorm parameters and biases.
        resolutions: input sizes; each batch draws one.
    """

    name: str
    kind: str
    space: str
    epochs: int
    lr_per_256: float
    warmup_epochs: int = 0
    subnets_per_step: int = 1
    kernel_sizes: tuple[int, ...] | None = None
    depths: tuple[int, ...] | None = None
    expand_ratios: tuple[int, ...] | None = None
    sort_channels: bool = False
    distill: float = 1.0
    label_smoothing: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-5
    resolutions: tuple[int, ...] = field(default=TRAIN_RESOLUTIONS)

    def __post_init__(self) -> None:
        for name in ("kernel_sizes", "depths", "expand_ratios", "resolutions"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _int_tuple(value, name))
        if not isinstance(self.name, str) or not self.name:
            raise PhaseConfigError(f"phase name must be a non-empty string, got {self.name!r}")
        if not _PLAIN_NAME.fullmatch(self.name):  # it names the phase's folder inside the run folder
            raise PhaseConfigError(f"phase name {self.name!r} must be a plain name (letters, digits, '.', '_', '-'; "
                                   "not starting with '.'): it becomes a folder of the run")
        if self.kind not in PHASE_KINDS:
            raise PhaseConfigError(
                f"phase {self.name!r}: kind must be one of {', '.join(PHASE_KINDS)}, got {self.kind!r}")
        design = get_space(self.space)  # an unknown space names the known ones
        for name in ("epochs", "warmup_epochs", "subnets_per_step"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name != "warmup_epochs" else 0):
                raise PhaseConfigError(f"phase {self.name!r}: {name} must be a positive integer, got {value!r}")
        if self.warmup_epochs >= self.epochs:
            raise PhaseConfigError(f"phase {self.name!r}: warmup_epochs ({self.warmup_epochs}) must be fewer than "
                                   f"epochs ({self.epochs})")
        for name in ("lr_per_256", "distill", "label_smoothing", "momentum", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise PhaseConfigError(f"phase {self.name!r}: {name} must be a number >= 0, got {value!r}")
        if self.lr_per_256 <= 0 or self.label_smoothing >= 1:
            raise PhaseConfigError(f"phase {self.name!r}: need lr_per_256 > 0 and label_smoothing < 1")
        if self.kind == "teacher" and self.distill:
            raise PhaseConfigError(f"phase {self.name!r}: the teacher phase trains the teacher; set distill: 0")
        self._check_choices(design)

    def _check_choices(self, design: Any) -> None:
        allowed = {"kernel_sizes": {k for s in design.stages for k in s.kernel_sizes},
                   "depths": {d for s in design.stages for d in s.depths},
                   "expand_ratios": {e for s in design.stages for e in s.expand_ratios}}
        for name, values in allowed.items():
            chosen = getattr(self, name)
            if chosen is not None and (not chosen or not set(chosen) <= values):
                raise PhaseConfigError(f"phase {self.name!r}: {name} {list(chosen)} must be a non-empty subset of "
                                       f"{self.space}'s {sorted(values)}")
        for resolution in self.resolutions:
            design.check_resolution(resolution)

    def lr(self, global_batch: int) -> float:
        """The initial learning rate for `global_batch` images per step (linear scaling)."""
        return self.lr_per_256 * global_batch / 256

    def to_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "phase config") -> Phase:
        if not isinstance(data, Mapping):
            raise PhaseConfigError(f"{origin}: expected a mapping of phase settings, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise PhaseConfigError(f"{origin}: unknown key(s) {', '.join(map(repr, unknown))}; "
                                   f"a phase takes {', '.join(known)}")
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in data and f.default is dataclasses.MISSING]
        if missing:
            raise PhaseConfigError(f"{origin}: missing key(s) {', '.join(missing)}")
        try:
            return cls(**data)
        except CompofaError as error:  # also an unknown space or a resolution it does not allow
            raise PhaseConfigError(f"{origin}: {error}") from None


def _int_tuple(value: Any, name: str) -> tuple[int, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise PhaseConfigError(f"{name} must be integers, got {value!r}")
    return tuple(items)


def read_phases(path: str | Path) -> tuple[Phase, ...]:
    """Phases from a YAML or JSON file: one phase (a mapping) or several (a list of mappings, run in order)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise PhaseConfigError(f"cannot read phase config {str(path)!r}: {error.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        first_line = str(error).splitlines()[0]
        raise PhaseConfigError(f"phase config {str(path)!r} is not valid {kind}: {first_line}") from None
    entries = data if isinstance(data, list) else [data]
    if not entries:
        raise PhaseConfigError(f"phase config {str(path)!r} holds no phase")
    return tuple(Phase.from_dict(entry, f"{path} phase {index + 1}") for index, entry in enumerate(entries))


# -- the paper's schedules ------------------------------------------------------------------------------

#: The reference script's rates: 2.6 per 2048 images for the teacher and elastic kernel,
#: 0.08 per 2048 for the 25-epoch phases, 0.24 per 2048 for the 125-epoch ones.
_TEACHER_LR, _SHORT_LR, _LONG_LR = 2.6 / 8, 0.08 / 8, 0.24 / 8


def _teacher() -> Phase:
    return Phase("teacher", "teacher", "ofa-mbv3", 180, _TEACHER_LR, kernel_sizes=(7,), depths=(4,),
                 expand_ratios=(6,), distill=0.0)


def _kernel() -> Phase:
    return Phase("elastic-kernel", "progressive", "ofa-mbv3", 125, _TEACHER_LR, warmup_epochs=5, kernel_sizes=(3, 5, 7),
                 depths=(4,), expand_ratios=(6,))


def _compound(space: str) -> tuple[Phase, Phase]:
    return (Phase("compound-1", "compound", space, 25, _SHORT_LR, subnets_per_step=4),
            Phase("compound-2", "compound", space, 125, _LONG_LR, warmup_epochs=5, subnets_per_step=4))


def _progressive() -> tuple[Phase, ...]:
    def phase(name: str, epochs: int, depths: tuple[int, ...], expands: tuple[int, ...], n: int) -> Phase:
        long = epochs > 25
        return Phase(name, "progressive", "ofa-mbv3", epochs, _LONG_LR if long else _SHORT_LR,
                     warmup_epochs=5 if long else 0, subnets_per_step=n, depths=depths, expand_ratios=expands,
                     sort_channels=name == "elastic-width-1")

    return (phase("elastic-depth-1", 25, (3, 4), (6,), 2), phase("elastic-depth-2", 125, (2, 3, 4), (6,), 2),
            phase("elastic-width-1", 25, (2, 3, 4), (4, 6), 4), phase("elastic-width-2", 125, (2, 3, 4), (3, 4, 6), 4))


#: Paper Table 1 (a) OFA, (b) CompOFA fixed kernel, and Table 3 CompOFA elastic kernel.
PRESETS: dict[str, tuple[Phase, ...]] = {
    "compofa": (_teacher(), *_compound("compofa")),
    "compofa-ek": (_teacher(), _kernel(), *_compound("compofa-ek")),
    "ofa": (_teacher(), _kernel(), *_progressive()),
}


def preset(name: str) -> tuple[Phase, ...]:
    if name not in PRESETS:
        raise PhaseConfigError(f"unknown schedule {name!r}; presets: {', '.join(PRESETS)}, or a YAML/JSON file")
    return PRESETS[name]
