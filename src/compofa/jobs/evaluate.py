"""Measured accuracy of subnets: BatchNorm recalibrated, then top-1 and top-5 on the validation set.

A subnet's BatchNorm statistics are slices of the supernet's, gathered over
many subnets; OFA and CompOFA re-estimate them on a few thousand training
images before evaluating one (docs/architecture.md, "Training"). The images are
a fixed, seeded subset seen with the evaluation transform, so a subnet scores the
same every time. Each result is committed to the table's accuracy rows
(`compofa.tables.accuracy`) the moment it exists (`compofa search --accuracy
table:PATH` reads them); rerunning skips the subnets the table already has for
these weights.

Under ``torchrun`` the subnets are split over the ranks (a subnet takes minutes
on ImageNet; the space has 243 at each resolution). Only the first rank opens
the table, as its one writer for the whole run; it hands out what the table
lacks, and the ranks evaluate in rounds of one subnet each, after which every
rank's result reaches the first, which commits them. An interruption loses at
most the round in flight.

At precision int8 a subnet is scored as int8 deployment ships it: quantized by
ONNX Runtime after its BatchNorm is recalibrated, and run by ONNX Runtime
(`compofa.jobs.int8_accuracy`); its row is keyed by the precision, beside the
fp32 row of the same subnet and weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from compofa.devices.base import Quantization
from compofa.errors import CompofaError
from compofa.jobs.int8_accuracy import score_int8
from compofa.sources.calibration import DEFAULT_IMAGES, CalibrationSet, calibration_set
from compofa.space import SubnetSpec, get_space
from compofa.supernet.bn import recalibrate_batchnorm
from compofa.supernet.checkpoint import load_supernet
from compofa.supernet.train.data import batches, check_dataset, eval_transform, image_folder
from compofa.supernet.train.distributed import Ranks, device_for, join
from compofa.tables.store import writing

#: Training images BatchNorm statistics are re-estimated on (OFA's default subset size).
CALIBRATION_IMAGES = 2000
#: What an accuracy can be measured at: the PyTorch network in fp32, or its int8 model in ONNX Runtime.
EVAL_PRECISIONS = ("fp32", "int8")


class EvalError(CompofaError):
    """An evaluation that cannot be done as asked."""


def weights_id(path: Path) -> str:
    """Names the weights accuracies were measured with: file name and content digest."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{path.name}:{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class EvalRequest:
    checkpoint: Path
    space: str
    data: Path
    specs: tuple[SubnetSpec, ...]
    table: Path
    calibration_images: int = CALIBRATION_IMAGES
    batch_size: int = 100
    workers: int = 2
    device: str = "cpu"
    seed: int = 0
    precision: str = "fp32"
    int8_images: int = DEFAULT_IMAGES  # training images an int8 model is calibrated on


@dataclass(frozen=True)
class SubnetAccuracy:
    spec: SubnetSpec
    top1: float
    top5: float
    images: int


def _loader(dataset: Any, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)


class _Images:
    """The calibration subset and the validation set at each resolution, each listed once
    (listing an ImageNet folder takes seconds; there are 243 subnets per resolution)."""

    def __init__(self, request: EvalRequest) -> None:
        self.request = request
        self._sets: dict[int, tuple[Any, Any]] = {}

    def at(self, resolution: int) -> tuple[Any, Any]:
        if resolution not in self._sets:
            request = self.request
            train = image_folder(request.data, "train", eval_transform(resolution))
            count = min(request.calibration_images, len(train))
            chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(request.seed))[:count]
            val = image_folder(request.data, "val", eval_transform(resolution))
            self._sets[resolution] = (torch.utils.data.Subset(train, chosen.tolist()), val)
        return self._sets[resolution]


def evaluate_subnets(
    request: EvalRequest, on_done: Callable[[SubnetAccuracy, int, int], None] | None = None,
) -> list[SubnetAccuracy]:
    """Evaluate every spec the table lacks for these weights; returns those evaluated now.

    Under torchrun every rank calls this; the first returns (and reports through
    `on_done`) every result of the run, the others an empty list.
    """
    check_dataset(request.data)
    int8 = int8_calibration(request)
    design = get_space(request.space)
    ranks = join(request.device)
    # refuses another family, a space the weights were not trained on, and names a misfit
    supernet = load_supernet(request.checkpoint, design.family, space=request.space)
    weights = weights_id(request.checkpoint)
    device = device_for(request.device, ranks)
    settings: dict[str, Any] = {"calibration_images": request.calibration_images, "seed": request.seed,
                                "data": str(request.data)}
    if int8 is not None:
        settings["quantization"] = int8[0].describe()
    images = _Images(request)

    def evaluate(spec: SubnetSpec) -> SubnetAccuracy:
        subnet = supernet.subnet(spec).to(device)
        calibration_set, val = images.at(spec.resolution)
        loader = _loader(calibration_set, request.batch_size, request.workers)
        recalibrate_batchnorm(subnet, (batch.to(device) for batch, _ in batches(loader)))
        if int8 is None:
            return _score(subnet.eval(), spec, val, request, device)
        recipe, calibration = int8
        validation = batches(_loader(val, request.batch_size, request.workers))
        top1, top5, seen = score_int8(subnet.eval(), spec, supernet.plan(spec), supernet.family.bn_eps, recipe,
                                      calibration, validation, torch.get_num_threads())
        return SubnetAccuracy(spec, top1 / seen, top5 / seen, seen)

    if not ranks.leader:
        for spec in _share(_todo_from_leader(None, ranks), ranks):
            _send_to_leader(evaluate(spec) if spec is not None else None, ranks)
        return []
    results: list[SubnetAccuracy] = []
    with writing(request.table) as table:  # its writer for the whole run: nothing else interleaves
        rows = table.accuracy
        done = set(rows.top1(request.space, supernet.width, weights, request.precision))
        todo = _todo_from_leader([spec for spec in request.specs if str(spec) not in done], ranks)
        for spec in _share(todo, ranks):
            for result in _send_to_leader(evaluate(spec) if spec is not None else None, ranks):
                rows.put(request.space, supernet.width, str(result.spec), result.spec.resolution, weights,
                         result.top1, result.top5, result.images, settings, request.precision)
                table.checkpoint()
                results.append(result)
                if on_done is not None:
                    on_done(result, len(results), len(todo))
    return results


def int8_calibration(request: EvalRequest) -> tuple[Quantization, CalibrationSet] | None:
    """For precision int8: the recipe and the training images its models are calibrated on, drawn and checked
    now (before the table is opened); None for fp32."""
    if request.precision not in EVAL_PRECISIONS:
        raise EvalError(f"accuracy is measured at {' or '.join(EVAL_PRECISIONS)} (the PyTorch network, or its int8 "
                        f"model in ONNX Runtime), not {request.precision}", option="precision")
    if request.precision != "int8":
        return None
    chosen = calibration_set(request.data, request.int8_images, request.seed)  # DATA/train
    chosen.check_resolution(max((spec.resolution for spec in request.specs), default=0))
    return Quantization(str(request.data), request.int8_images, request.seed, chosen.digest), chosen


def _todo_from_leader(todo: list[SubnetSpec] | None, ranks: Ranks) -> list[SubnetSpec]:
    """The leader's list of what the table lacks, on every rank."""
    if not ranks.distributed:
        return todo or []
    import torch.distributed as dist

    shared: list[Any] = [todo]
    dist.broadcast_object_list(shared, src=0)
    return list(shared[0])


def _share(todo: Sequence[SubnetSpec], ranks: Ranks) -> list[SubnetSpec | None]:
    """This rank's subnet of each round (None where the last round has none for it): round k gives rank r
    the subnet k * world + r, so the ranks finish together and each round's results can be committed."""
    rounds = -(-len(todo) // ranks.world)
    return [todo[k * ranks.world + ranks.rank] if k * ranks.world + ranks.rank < len(todo) else None
            for k in range(rounds)]


def _send_to_leader(result: SubnetAccuracy | None, ranks: Ranks) -> list[SubnetAccuracy]:
    """Every rank's result of this round, in rank order, on the leader (an empty list elsewhere)."""
    if not ranks.distributed:
        return [result] if result is not None else []
    import torch.distributed as dist

    gathered: list[Any] = [None] * ranks.world if ranks.leader else []
    dist.gather_object(result, gathered if ranks.leader else None, dst=0)
    return [item for item in gathered if item is not None]


def _score(
    subnet: torch.nn.Module, spec: SubnetSpec, val: Any, request: EvalRequest, device: torch.device,
) -> SubnetAccuracy:
    top1 = top5 = 0
    with torch.no_grad():
        for images, labels in batches(_loader(val, request.batch_size, request.workers)):
            logits = subnet(images.to(device))
            best = logits.topk(5, dim=1).indices.cpu()
            top1 += int((best[:, 0] == labels).sum())
            top5 += int((best == labels[:, None]).any(dim=1).sum())
    return SubnetAccuracy(spec, top1 / len(val), top5 / len(val), len(val))


def specs_to_evaluate(space: str, resolutions: Sequence[int], sample: int | None, seed: int) -> tuple[SubnetSpec, ...]:
    """Every subnet of an enumerable space at `resolutions`, or `sample` of them drawn with `seed`."""
    import numpy as np

    design = get_space(space)
    if sample is None:
        return tuple(design.enumerate(resolutions))
    rng = np.random.default_rng(seed)
    return tuple(dict.fromkeys(design.sample(rng, resolutions) for _ in range(sample)))  # each once
