"""Running one training phase: epochs of steps, a checkpoint and a log row after every epoch, exact resume.

The checkpoint (``OUTPUT/checkpoint.pt``) is a compofa supernet checkpoint
(`compofa.supernet.load_supernet` reads it, so every command that takes
``--checkpoint`` does) with the training state beside the weights: the phase,
epochs done, optimizer, the torch random state and the log. It is written to a
temporary file and renamed, so an interruption or a full disk leaves the
previous epoch's checkpoint valid; rerunning the same command continues after
the last finished epoch. Which subnets, resolution and image order a step uses
follow from (seed, epoch, step), so a resumed run trains what the uninterrupted
one would have.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compofa.errors import CompofaError
from compofa.fileio import write_bytes_atomic
from compofa.space import get_space, unconstrained_space
from compofa.supernet.checkpoint import load_state, read_checkpoint, save_checkpoint, unwrap_checkpoint
from compofa.supernet.network import Supernet
from compofa.supernet.train.data import batches, check_dataset, image_folder, train_transform
from compofa.supernet.train.distributed import Ranks, average_gradients, barrier, check_in_sync, device_for, join
from compofa.supernet.train.optim import build_optimizer, learning_rate, set_learning_rate
from compofa.supernet.train.phases import Phase
from compofa.supernet.train.sampling import PhaseSampler
from compofa.supernet.train.step import StepLosses, resize_batch, train_step

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.csv"
LOG_FIELDS = ("epoch", "lr", "loss", "cross_entropy", "distillation", "top1", "images", "seconds", "images_per_s")


class TrainError(CompofaError):
    """A training run that cannot start or continue as asked."""


@dataclass(frozen=True)
class TrainRequest:
    """One phase to run.

    Attributes:
        phase: what to train.
        data: dataset folder (ImageFolder layout, see `compofa.supernet.train.data`).
        output: the run's folder: checkpoint and log (a rerun resumes from it).
        width: width multiplier (default: the family's).
        kernel_transform: OFA's learned kernel transform (default: the phase space's).
        batch_size: images per step.
        workers: data-loading processes.
        seed: seeds the weights of a fresh supernet, the data order and every draw.
        init: a checkpoint to start from (the previous phase's); None starts fresh.
        teacher: the checkpoint whose full network is distilled from (default: `init`).
        device: where to train ("cpu", "cuda", "cuda:1").
        max_steps: steps per epoch at most (a quick try); None: the whole training set.
        mixed_precision: float16 autocast with loss scaling (default: on a GPU, not on a CPU).
    """

    phase: Phase
    data: Path
    output: Path
    width: float | None = None
    kernel_transform: bool | None = None
    batch_size: int = 64
    workers: int = 2
    seed: int = 0
    init: Path | None = None
    teacher: Path | None = None
    device: str = "cpu"
    max_steps: int | None = None
    mixed_precision: bool | None = None


@dataclass
class PhaseResult:
    epochs_done: int
    resumed_from: int
    log: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None


StepListener = Callable[[int, int, StepLosses], None]  # epoch, step, losses
EpochListener = Callable[[int, int], None]  # epoch about to start, its steps


def _fresh_supernet(request: TrainRequest, width: float) -> Supernet:
    torch.manual_seed(request.seed)
    design = get_space(request.phase.space)
    transform = design.kernel_transform if request.kernel_transform is None else request.kernel_transform
    return Supernet(design.family, width, transform)


def _teacher(request: TrainRequest, supernet: Supernet) -> nn.Module | None:
    if request.phase.distill <= 0:
        return None
    source = request.teacher or request.init
    if source is None:
        raise TrainError(f"phase {request.phase.name!r} distills from the full network: give the teacher's "
                         "checkpoint, or a checkpoint to start from", option=("teacher", "init"))
    teacher = Supernet(supernet.family, supernet.width, supernet.kernel_transform)
    load_state(teacher, read_checkpoint(source)[0])
    full = unconstrained_space(supernet.family).largest(max(request.phase.resolutions))
    module = teacher.subnet(full).eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def _resume_state(path: Path, phase: Phase) -> dict[str, Any] | None:
    """The whole checkpoint a rerun continues from (weights and training state), checked to be this phase's."""
    if not path.exists():
        return None
    content = _read_training_checkpoint(path)
    state = content["training"]
    if state.get("phase") != phase.to_dict():
        raise TrainError(f"{path} belongs to phase {state.get('phase', {}).get('name')!r} with other settings; "
                         "write this phase to another folder", option="output")
    return content


def _read_training_checkpoint(path: Path) -> dict[str, Any]:
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a bad file
        raise TrainError(
            f"cannot resume from {path}: unreadable ({type(error).__name__}); move it away to start over") from None
    state = content.get("training") if isinstance(content, dict) else None
    if not isinstance(state, dict) or "epochs_done" not in state or not isinstance(state.get("phase"), dict):
        raise TrainError(f"{path} is not a training checkpoint; write the run to another folder", option="output")
    return content


def epochs_done(path: Path) -> tuple[int, int]:
    """(epochs finished, epochs of its phase) recorded in a training checkpoint."""
    state = _read_training_checkpoint(path)["training"]
    return int(state["epochs_done"]), int(state["phase"]["epochs"])


def train_phase(
    request: TrainRequest, on_step: StepListener | None = None, on_epoch: EpochListener | None = None,
) -> PhaseResult:
    """Run `request.phase` to its last epoch, resuming from the output folder's checkpoint if there is one."""
    phase = request.phase
    check_dataset(request.data)
    design = get_space(phase.space)
    width = request.width if request.width is not None else design.family.default_width
    design.family.check_width(width)
    if request.batch_size < 1:
        raise TrainError(f"batch size must be at least 1, got {request.batch_size}")
    device_for(request.device)  # an unknown or absent device is refused before anything is loaded
    checkpoint = request.output / CHECKPOINT_NAME
    resumed = _resume_state(checkpoint, phase)
    state = resumed["training"] if resumed is not None else None
    supernet = _fresh_supernet(request, width)
    if resumed is not None:
        load_state(supernet, unwrap_checkpoint(resumed, str(checkpoint))[0])  # read once, above
    elif request.init is not None:
        load_state(supernet, read_checkpoint(request.init)[0])
    teacher = _teacher(request, supernet)
    ranks = join(request.device)
    device = device_for(request.device, ranks)
    supernet.to(device)
    if teacher is not None:
        teacher.to(device)
    optimizer = build_optimizer(supernet, phase, request.batch_size * ranks.world)
    mixed = device.type == "cuda" if request.mixed_precision is None else request.mixed_precision
    if mixed and device.type != "cuda":
        raise TrainError("mixed precision needs a GPU (device cuda)", option="device")
    scaler = torch.amp.GradScaler("cuda") if mixed else None
    log: list[dict[str, float]] = []
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        log, start = list(state["log"]), int(state["epochs_done"])
    elif phase.sort_channels:
        supernet.sort_middle_channels()
    dataset = image_folder(request.data, "train", train_transform(max(phase.resolutions)))
    steps = len(dataset) // (request.batch_size * ranks.world)
    if steps == 0:
        raise TrainError(f"the training set has {len(dataset)} images, fewer than one batch of {request.batch_size} "
                         f"for each of {ranks.world} processes")
    steps = min(steps, request.max_steps or steps)
    sampler = PhaseSampler(phase)
    for epoch in range(start, phase.epochs):
        if on_epoch is not None:
            on_epoch(epoch, steps)
        row = _epoch(request, supernet, teacher, optimizer, scaler, sampler, dataset, epoch, steps, device, ranks,
                     on_step)
        check_in_sync(supernet, ranks)
        log.append(row)
        if ranks.leader:
            _save(request, supernet, optimizer, scaler, epoch + 1, log)
            _tensorboard(request.output, row)
        barrier(ranks)  # no rank starts the next epoch before the checkpoint of this one exists
    return PhaseResult(phase.epochs, start, log, checkpoint)


def _tensorboard(output: Path, row: dict[str, float]) -> None:
    """The epoch's log row as TensorBoard scalars in OUTPUT/tensorboard, when tensorboard is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: log.csv holds the same numbers
        return
    with SummaryWriter(str(output / "tensorboard")) as writer:
        for name, value in row.items():
            if name != "epoch":
                writer.add_scalar(name, value, int(row["epoch"]))


def _epoch(
    request: TrainRequest, supernet: Supernet, teacher: nn.Module | None, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None, sampler: PhaseSampler, dataset: Any, epoch: int, steps: int,
    device: torch.device, ranks: Ranks, on_step: StepListener | None,
) -> dict[str, float]:
    phase = request.phase
    # one shuffled order per epoch, the same on a resumed run; each rank takes its own share of it
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(request.seed * 100_003 + epoch))
    mine = order[ranks.rank :: ranks.world][: steps * request.batch_size].tolist()
    loader = torch.utils.data.DataLoader(dataset, batch_size=request.batch_size, drop_last=True, sampler=mine,
                                         num_workers=request.workers, persistent_workers=False)
    supernet.train()
    sums = [0.0, 0.0, 0.0, 0.0]
    began = time.perf_counter()
    rate = 0.0
    for step, (images, labels) in enumerate(batches(loader)):
        if step >= steps:
            break
        resolution, specs = sampler.draw_step(request.seed, epoch, step)
        rate = learning_rate(phase, request.batch_size, epoch * steps + step, steps)
        set_learning_rate(optimizer, rate)
        images = resize_batch(images.to(device, non_blocking=True), resolution)
        losses = train_step(supernet, supernet, optimizer, images, labels.to(device), specs, phase.label_smoothing,
                            phase.distill, teacher, reduce=lambda: average_gradients(supernet, ranks), scaler=scaler)
        for index, value in enumerate((losses.loss, losses.cross_entropy, losses.distillation, losses.top1)):
            sums[index] += value
        if on_step is not None:
            on_step(epoch, step, losses)
    seconds = time.perf_counter() - began
    images_seen = steps * request.batch_size * ranks.world  # losses and top-1 are this rank's
    return {"epoch": epoch + 1, "lr": rate, "loss": sums[0] / steps, "cross_entropy": sums[1] / steps,
            "distillation": sums[2] / steps, "top1": sums[3] / steps, "images": images_seen,
            "seconds": seconds, "images_per_s": images_seen / seconds if seconds > 0 else 0.0}


def _save(request: TrainRequest, supernet: Supernet, optimizer: torch.optim.Optimizer,
          scaler: torch.amp.GradScaler | None, epochs_done: int, log: list[dict[str, float]]) -> None:
    training = {"phase": request.phase.to_dict(), "epochs_done": epochs_done, "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(), "log": log, "seed": request.seed,
                "scaler": scaler.state_dict() if scaler is not None else {}}
    request.output.mkdir(parents=True, exist_ok=True)  # only now: a phase that never finished an epoch leaves none
    save_checkpoint(supernet, request.output / CHECKPOINT_NAME, {"training": training})
    text = io.StringIO()
    writer = csv.DictWriter(text, LOG_FIELDS)
    writer.writeheader()
    writer.writerows(log)
    write_bytes_atomic(request.output / LOG_NAME, text.getvalue().encode())

