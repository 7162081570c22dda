"""Two processes on a CPU (gloo): torchrun trains with identical weights on both ranks, and a divergence is caught."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from compofa.supernet.train import preset
from compofa.supernet.train.data import write_digits
from compofa.supernet.train.distributed import DistributedError, Ranks, average_gradients, check_in_sync


def _rank(rank: int, store: str, outcome: dict) -> None:  # type: ignore[type-arg]
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    ranks = Ranks(rank, 2, rank)
    model = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(model.weight, 1.0)
    torch.nn.init.zeros_(model.bias)
    model.weight.grad = torch.full_like(model.weight, float(rank))  # rank 0: 0, rank 1: 1
    average_gradients(model, ranks)
    outcome[f"grad{rank}"] = float(model.weight.grad[0, 0])  # the mean, 0.5, on both
    check_in_sync(model, ranks)  # identical weights: passes
    if rank == 1:
        with torch.no_grad():
            model.weight[0, 0] += 1e-3
    try:
        check_in_sync(model, ranks)
    except DistributedError as error:
        outcome[f"caught{rank}"] = str(error)
    dist.destroy_process_group()


def test_gradients_are_averaged_and_a_divergence_is_caught(tmp_path: Path) -> None:
    outcome = mp.Manager().dict()
    mp.spawn(_rank, args=(str(tmp_path / "store"), outcome), nprocs=2, join=True)
    assert outcome["grad0"] == outcome["grad1"] == 0.5
    assert "ranks hold different weights" in outcome["caught0"] and "caught1" in outcome


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun is not installed beside this Python")
def test_torchrun_two_processes_train_one_model(tmp_path: Path) -> None:
    write_digits(tmp_path / "digits", val_share=0.05)
    teacher = dataclasses.replace(preset("compofa")[0], name="t", epochs=1, resolutions=(128,))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump([teacher.to_dict()]))
    torchrun = str(Path(sys.executable).parent / "torchrun")
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "compofa", "train", "--schedule",
         str(tmp_path / "s.yaml"), "--data", str(tmp_path / "digits"), "-o", str(tmp_path / "run"), "--width", "1.0",
         "--batch", "4", "--workers", "0", "--max-steps", "2", "--quiet"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # one summary (the first process speaks for both); the weights were checked equal on both ranks
    assert result.stdout.count("1 epochs") == 1 and (tmp_path / "run" / "t" / "log.csv").exists()
    rows = (tmp_path / "run" / "t" / "log.csv").read_text().splitlines()
    assert rows[1].split(",")[6] == str(2 * 4 * 2)  # images: 2 steps x 4 images x 2 processes
