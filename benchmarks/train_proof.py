"""Training on this CPU: CompOFA's schedule against OFA's progressive shrinking on the same budget.

On the digits dataset (`compofa digits`, no download), at one resolution and
width 1.0 to fit a CPU: a teacher, then CompOFA's compound phases; from the
same teacher, OFA's progressive phases with the same number of epochs in all.
Each trained supernet is evaluated (BatchNorm recalibrated) on all 243 CompOFA
subnets, which are OFA subnets too (the paper's Figure 6, right). Also the
throughput of a compound step (4 subnets and the teacher) against a plain step
of the largest subnet alone. Prints tables; asserts nothing.

Run: ``python benchmarks/train_proof.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from compofa.space import get_space
from compofa.supernet.checkpoint import load_supernet
from compofa.supernet.train import preset
from compofa.supernet.train.data import image_folder, train_transform, write_digits
from compofa.jobs.evaluate import EvalRequest, evaluate_subnets
from compofa.supernet.train.loop import CHECKPOINT_NAME, TrainRequest
from compofa.supernet.train.phases import Phase
from compofa.supernet.train.sampling import PhaseSampler
from compofa.supernet.train.schedule import ScheduleRequest, run_schedule
from compofa.supernet.train.step import train_step


def fitted(phase: Phase, epochs: int, resolution: int) -> Phase:
    """`phase` shortened to `epochs` at one resolution; warm-up keeps its share of the phase (at least 1 epoch)."""
    warmup = min(max(1, round(phase.warmup_epochs * epochs / phase.epochs)), epochs - 1) if phase.warmup_epochs else 0
    return dataclasses.replace(phase, epochs=epochs, warmup_epochs=warmup, resolutions=(resolution,))


def split(budget: int, phases: tuple[Phase, ...]) -> list[int]:
    """`budget` epochs shared out in proportion to the phases' own epochs, at least 1 each (largest remainder)."""
    if budget < len(phases):
        raise SystemExit(f"--epochs must be at least {len(phases)} (one per phase)")
    total = sum(p.epochs for p in phases)
    ideal = [(budget - len(phases)) * p.epochs / total for p in phases]
    shares = [1 + int(x) for x in ideal]
    for index in sorted(range(len(phases)), key=lambda i: int(ideal[i]) - ideal[i])[: budget - sum(shares)]:
        shares[index] += 1
    return shares


def train(phases: tuple[Phase, ...], run: Path, base: TrainRequest,
          skip: int = 0) -> dict[str, tuple[float, float]]:
    """Training seconds (its epochs' sum) and images/s of each phase after the first `skip` (finished in `run`)."""
    times = {}
    for phase in phases[skip:]:
        (result,) = run_schedule(ScheduleRequest(phases, run, base, only=phase.name))
        # from the log, which a resumed run keeps: a run continued after an interruption reports every epoch
        seconds = sum(row["seconds"] for row in result.log)
        times[phase.name] = (seconds, sum(row["images"] for row in result.log) / seconds)
    return times


def accuracy(checkpoint: Path, data: Path, resolution: int, calibration: int, table: Path,
             count: int | None) -> dict[str, float]:
    """Top-1 of every CompOFA subnet (or the first `count` and the largest) by spec text."""
    specs = tuple(get_space("compofa").enumerate([resolution]))
    if count is not None:
        specs = (*specs[:count], get_space("compofa").largest(resolution))
    evaluate_subnets(EvalRequest(checkpoint, "compofa", data, specs, table, calibration, 100, 0))
    from compofa.tables import LatencyTable

    with LatencyTable.open(table) as store:
        return store.accuracies("compofa", 1.0)


def timed_accuracy(*args: Any) -> tuple[dict[str, float], float]:
    start = time.perf_counter()
    rows = accuracy(*args)
    return rows, time.perf_counter() - start


def throughput(data: Path, checkpoint: Path, resolution: int, batch: int, steps: int) -> tuple[float, float]:
    """Images/s of a compound step and of a plain step of the largest subnet, same batch and resolution."""
    supernet = load_supernet(checkpoint, "mobilenetv3")
    teacher = supernet.subnet(get_space("ofa-mbv3").largest(resolution)).eval()
    loader = torch.utils.data.DataLoader(image_folder(data, "train", train_transform(resolution)), batch_size=batch,
                                         shuffle=True, drop_last=True)
    images, labels = next(iter(loader))
    compound = PhaseSampler(preset("compofa")[1])
    rates = []
    for specs, distill in (([compound.draw_step(0, 0, s)[1] for s in range(steps)], 1.0),
                           ([(get_space("compofa").largest(resolution),)] * steps, 0.0)):
        optimizer = torch.optim.SGD(supernet.parameters(), lr=1e-3, momentum=0.9)
        supernet.train()
        start = time.perf_counter()
        for step_specs in specs:
            train_step(supernet, supernet, optimizer, images, labels, step_specs, 0.1, distill,
                       teacher if distill else None)
        rates.append(steps * batch / (time.perf_counter() - start))
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch per phase, 2 steps: a smoke run")
    parser.add_argument("--teacher-epochs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=6, help="epochs after the teacher, the same for each method")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--calibration-images", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="keep the runs under this folder")
    args = parser.parse_args()
    teacher_epochs, epochs = (1, 5) if args.quick else (args.teacher_epochs, args.epochs)
    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or Path(scratch)
        data = work / "digits"
        if not data.exists():
            write_digits(data)
        base = TrainRequest(preset("compofa")[0], data, work, width=1.0, kernel_transform=False,
                            batch_size=args.batch, workers=0, max_steps=2 if args.quick else None)
        r = args.resolution
        teacher = fitted(preset("compofa")[0], teacher_epochs, r)
        compound = preset("compofa")[1:]
        compofa = (teacher, *(fitted(p, n, r) for p, n in zip(compound, split(epochs, compound))))
        ofa_phases = preset("ofa")[1:]  # kernel, depth-1, depth-2, width-1, width-2
        ofa = (teacher, *(fitted(p, n, r) for p, n in zip(ofa_phases, split(epochs, ofa_phases))))
        times = {"compofa": train(compofa, work / "compofa", base)}
        # both methods start from the same teacher, trained once
        if not (work / "ofa" / teacher.name).exists():
            shutil.copytree(work / "compofa" / teacher.name, work / "ofa" / teacher.name)
        times["ofa"] = train(ofa, work / "ofa", base, skip=1)
        # The two evaluations run side by side, one thread each: small eager convolutions gain little from a
        # second thread, so two processes finish sooner than one after the other.
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=torch.set_num_threads, initargs=(1,)) as pool:
            futures = {name: pool.submit(timed_accuracy, work / name / phases[-1].name / CHECKPOINT_NAME, data, r,
                                         args.calibration_images, work / f"{name}-acc.db", 5 if args.quick else None)
                       for name, phases in (("compofa", compofa), ("ofa", ofa))}
            results = {name: future.result() for name, future in futures.items()}
        compound_rate, plain_rate = throughput(data, work / "compofa" / "teacher" / CHECKPOINT_NAME, r,
                                               args.batch, 2 if args.quick else 5)
    print(f"\ndigits, width 1.0, {r} px, batch {args.batch}; teacher {teacher_epochs} epochs, then "
          f"{sum(p.epochs for p in compofa[1:])} (CompOFA) and {sum(p.epochs for p in ofa[1:])} (OFA) epochs")
    print(f"{'method':8} {'phase':18} {'seconds':>8} {'images/s':>9}  (seconds: the phase's epochs, start-up left out)")
    for method, phases in times.items():
        for phase, (seconds, rate) in phases.items():
            print(f"{method:8} {phase:18} {seconds:8.0f} {rate:9.1f}")
        print(f"{method:8} {'after the teacher':18} {sum(s for p, (s, _) in phases.items() if p != teacher.name):8.0f}")
    largest = str(get_space("compofa").largest(r))
    print(f"\n{'trained as':10} {'largest subnet':>15} {'median':>7} {'min':>6} {'max':>6} {'subnets':>7} {'eval s':>7}"
          "  (top-1 of CompOFA subnets; the two evaluations ran side by side, 1 thread each)")
    for method, (rows, seconds) in results.items():
        values = sorted(rows.values())
        print(f"{method:10} {rows[largest]:15.2%} {statistics.median(values):7.2%} {values[0]:6.2%} {values[-1]:6.2%} "
              f"{len(values):7d} {seconds:7.0f}")
    print(f"\ntraining step: compound (4 subnets + teacher) {compound_rate:.1f} images/s; plain (largest subnet alone) "
          f"{plain_rate:.1f} images/s; overhead {plain_rate / compound_rate:.1f}x")


if __name__ == "__main__":
    main()
