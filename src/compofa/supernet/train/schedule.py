"""Running a schedule: its phases in order, each in its own folder, each starting from the one before.

``RUN/<phase>/checkpoint.pt`` is where each phase ends; the next phase
starts from it, and every phase after the teacher distils from
``RUN/teacher/checkpoint.pt`` (or the teacher given). Rerunning resumes the
phase that was interrupted and skips the finished ones.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from compofa.space import get_space
from compofa.supernet.train.data import check_dataset
from compofa.supernet.train.loop import (
    CHECKPOINT_NAME,
    EpochListener,
    PhaseResult,
    StepListener,
    TrainError,
    TrainRequest,
    epochs_done,
    train_phase,
)
from compofa.supernet.train.phases import Phase, PhaseConfigError, preset, read_phases


def load_schedule(text: str) -> tuple[Phase, ...]:
    """A preset's name (compofa, ofa, compofa-ek) or a YAML/JSON file of phases."""
    if Path(text).suffix in (".yaml", ".yml", ".json"):
        return read_phases(text)
    return preset(text)


def shortened(phases: Sequence[Phase], epochs: int) -> tuple[Phase, ...]:
    """Every phase cut to `epochs` (warm-up cut to fit): a quick try of a whole schedule."""
    if epochs < 1:
        raise PhaseConfigError(f"epochs must be at least 1, got {epochs}", option="epochs")
    return tuple(dataclasses.replace(p, epochs=epochs, warmup_epochs=min(p.warmup_epochs, epochs - 1)) for p in phases)


@dataclass(frozen=True)
class ScheduleRequest:
    """A schedule to run; `base` holds what every phase shares (data, batch, device, ...)."""

    phases: tuple[Phase, ...]
    run: Path
    base: TrainRequest
    only: str | None = None  # run this phase alone (its predecessors must have finished)


def check_schedule(request: ScheduleRequest) -> None:
    """What can be refused before any work: phase names, the phase asked for, the dataset folder."""
    names = [p.name for p in request.phases]
    if len(set(names)) != len(names):
        raise PhaseConfigError(f"phase names must differ within a schedule (they name folders): {names}")
    if request.only is not None and request.only not in names:
        raise PhaseConfigError(f"the schedule has no phase {request.only!r}; its phases: {', '.join(names)}")
    check_run_folder(request.run)
    check_dataset(request.base.data)


def check_run_folder(run: Path) -> None:
    """The run folder must be a folder that exists or can be made, and written."""
    if run.exists() and not run.is_dir():
        raise TrainError(f"run folder {str(run)!r} is a file; give a folder name (-o run/)")
    existing = next((folder for folder in (run, *run.parents) if folder.exists()), Path("."))
    if not existing.is_dir():
        raise TrainError(f"cannot make run folder {str(run)!r}: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TrainError(f"cannot write run folder {str(run)!r}: {str(existing)!r} is not writable")


def run_schedule(
    request: ScheduleRequest, on_phase: Callable[[Phase, int], None] | None = None,
    on_step: StepListener | None = None,
    on_epoch: EpochListener | None = None,
) -> list[PhaseResult]:
    check_schedule(request)
    phases = request.phases
    # one kernel transform for the whole schedule: its last phase's space decides (CompOFA trains without)
    transform = request.base.kernel_transform
    if transform is None:
        transform = get_space(phases[-1].space).kernel_transform
    teacher = request.base.teacher
    init = request.base.init
    results = []
    for index, phase in enumerate(phases):
        folder = request.run / phase.name
        if request.only is None or phase.name == request.only:
            if phase.distill > 0 and teacher is None:
                raise TrainError(f"phase {phase.name!r} distils from the full network, but the schedule has no "
                                 "teacher phase before it: give a teacher checkpoint", option="teacher")
            if request.only is not None and index > 0 and init is None:
                raise TrainError(f"phase {phase.name!r} starts from {phases[index - 1].name!r}, which has not "
                                 f"finished in {request.run}: run it first, or give --init")
            if on_phase is not None:
                on_phase(phase, index)
            base = dataclasses.replace(request.base, phase=phase, output=folder, init=init, teacher=teacher,
                                       kernel_transform=transform)
            results.append(train_phase(base, on_step, on_epoch))
        finished = folder / CHECKPOINT_NAME
        if request.only == phase.name:
            break  # the phases after it are not run
        if request.only is not None and finished.exists() and _unfinished(finished, phase, request):
            continue  # an --init given instead
        if finished.exists():
            init = finished
            if phase.kind == "teacher":
                teacher = finished
        elif request.only is None:
            raise TrainError(f"phase {phase.name!r} left no checkpoint in {folder}")
    return results


def _unfinished(checkpoint: Path, phase: Phase, request: ScheduleRequest) -> bool:
    """Whether a phase run before `request.only` stopped early: refused, unless an --init replaces it."""
    done, epochs = epochs_done(checkpoint)
    if done >= epochs:
        return False
    if request.base.init is None:
        raise TrainError(f"phase {phase.name!r} in {request.run} stopped after {done} of {epochs} epochs: finish it "
                         f"first (--phase {phase.name}), or give --init to start from another checkpoint")
    return True
