"""A training phase end to end on the digits dataset: teacher, then compound, checkpoints and exact resume."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest
import torch

from compofa.errors import OutputPathError
from compofa.supernet import load_supernet
from compofa.supernet.train import preset
from compofa.supernet.train.data import write_digits
from compofa.supernet.train.loop import CHECKPOINT_NAME, LOG_NAME, TrainError, TrainRequest, train_phase


def small(phase_index: int, **changes: object):  # type: ignore[no-untyped-def]
    phase = preset("compofa")[phase_index]
    settings = {"epochs": 2, "warmup_epochs": min(phase.warmup_epochs, 1), "resolutions": (128,), **changes}
    return dataclasses.replace(phase, **settings)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    write_digits(root, size=32)
    return root


@pytest.fixture(scope="module")
def teacher(digits: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    request = TrainRequest(small(0, epochs=1, warmup_epochs=0), digits, out, width=1.0, kernel_transform=False, batch_size=8,
                           workers=0, max_steps=2)
    result = train_phase(request)
    assert result.epochs_done == 1 and result.resumed_from == 0
    return out / CHECKPOINT_NAME


def test_compound_phase_trains_logs_and_resumes_exactly(digits: Path, teacher: Path, tmp_path: Path) -> None:
    phase = small(1, subnets_per_step=2)

    def request(out: Path) -> TrainRequest:
        return TrainRequest(phase, digits, out, width=1.0, batch_size=8, workers=0, max_steps=2, init=teacher)

    whole = train_phase(request(tmp_path / "whole"))
    assert whole.epochs_done == 2 and [row["epoch"] for row in whole.log] == [1, 2]
    with open(tmp_path / "whole" / LOG_NAME) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(float(r["images_per_s"]) > 0 for r in rows)
    assert all(float(r["distillation"]) > 0 for r in rows)  # the teacher is distilled from

    def interrupt(epoch: int, step: int, losses: object) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_phase(request(tmp_path / "cut"), on_step=interrupt)
    resumed = train_phase(request(tmp_path / "cut"))
    assert resumed.resumed_from == 1 and resumed.epochs_done == 2
    a, b = (load_supernet(tmp_path / run / CHECKPOINT_NAME, "mobilenetv3") for run in ("whole", "cut"))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, msg=name)  # the resumed run trained exactly what the whole one did
    assert train_phase(request(tmp_path / "whole")).resumed_from == 2  # nothing left to do


def test_refusals(digits: Path, teacher: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="distills from the full network"):
        train_phase(TrainRequest(small(1), digits, tmp_path / "a", width=1.0, workers=0))
    other = dataclasses.replace(small(1), name="other")
    with pytest.raises(TrainError, match="belongs to phase 'teacher'"):
        train_phase(TrainRequest(other, digits, teacher.parent, width=1.0, workers=0, init=teacher))
    from compofa.supernet.train.distributed import DistributedError

    with pytest.raises(DistributedError, match="unknown device 'gpu'"):
        train_phase(TrainRequest(small(0), digits, tmp_path / "d", width=1.0, workers=0, device="gpu"))
    with pytest.raises(DistributedError, match="'cuda:99'"):  # no GPU here, or not 100 of them
        train_phase(TrainRequest(small(0), digits, tmp_path / "d", width=1.0, workers=0, device="cuda:99"))
    assert not (tmp_path / "d").exists()
    with pytest.raises(TrainError, match="fewer than one batch"):
        train_phase(TrainRequest(small(0), digits, tmp_path / "b", width=1.0, workers=0, batch_size=5000))


def test_train_command_runs_a_schedule_file_and_resumes(digits: Path, tmp_path: Path) -> None:
    import yaml

    from cli_helpers import assert_one_line_error, run

    phases = [dataclasses.replace(small(0, epochs=1, warmup_epochs=0), name="t").to_dict(),
              dataclasses.replace(small(1, epochs=1, subnets_per_step=2), name="c").to_dict()]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(phases))
    args = ("train", "--schedule", str(tmp_path / "s.yaml"), "--data", str(digits), "-o", str(tmp_path / "run"),
            "--width", "1.0", "--batch", "8", "--workers", "0", "--max-steps", "1", "--quiet")
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert (tmp_path / "run" / "t" / CHECKPOINT_NAME).exists() and (tmp_path / "run" / "c" / LOG_NAME).exists()
    again = run(*args, "--phase", "c")  # finished: nothing to do
    assert again.exit_code == 0 and "1 epochs" in again.stdout
    assert_one_line_error(run(*args[:-1], "--phase", "nope"), "has no phase 'nope'; its phases: t, c")
    assert_one_line_error(run("train", "--data", str(tmp_path / "none"), "-o", str(tmp_path / "x")), "does not exist")
    (tmp_path / "bad.yaml").write_text("name: x\nkind: compound\nspace: compofa\nepochs: 1\nlr_per_256: 0.1\nlr: 2\n")
    assert_one_line_error(run("train", "--schedule", str(tmp_path / "bad.yaml"), "--data", str(digits), "-o",
                              str(tmp_path / "y")), "unknown key(s) 'lr'")
    assert_one_line_error(run("train", "--schedule", "bogus", "--data", str(digits), "-o", str(tmp_path / "z")),
                          "unknown schedule 'bogus'")


def test_mixed_precision_needs_a_gpu(digits: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="mixed precision needs a GPU"):
        train_phase(TrainRequest(small(0), digits, tmp_path / "a", width=1.0, workers=0, mixed_precision=True))


def test_an_init_checkpoint_of_another_width_is_refused(digits: Path, teacher: Path, tmp_path: Path) -> None:
    from compofa.supernet.checkpoint import CheckpointError

    with pytest.raises(CheckpointError):
        train_phase(TrainRequest(small(1), digits, tmp_path / "b", width=1.2, workers=0, init=teacher))


def test_a_failed_checkpoint_write_keeps_the_previous_one(digits: Path, teacher: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of disk while saving epoch 2: epoch 1's checkpoint stays valid, and a rerun resumes from it."""
    import compofa.supernet.checkpoint as checkpoint_module

    request = TrainRequest(small(1, subnets_per_step=1), digits, tmp_path / "c", width=1.0, batch_size=8, workers=0,
                           max_steps=1, init=teacher)
    real_save = torch.save
    saves = []

    def full_disk(obj: object, handle: object, *args: object, **kwargs: object) -> None:
        saves.append(1)
        if len(saves) == 2:
            raise OSError(28, "No space left on device")
        real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    with pytest.raises(OutputPathError, match="No space left"):  # one line for the CLI, naming the file
        train_phase(request)
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)
    state = torch.load(tmp_path / "c" / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    assert state["training"]["epochs_done"] == 1 and [p.name for p in (tmp_path / "c").iterdir()
                                                      if p.name.endswith(".tmp")] == []
    assert train_phase(request).resumed_from == 1


def test_epochs_go_to_tensorboard_when_it_is_installed(digits: Path, teacher: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (log.csv holds the same numbers)")
    train_phase(TrainRequest(small(0, epochs=1, warmup_epochs=0), digits, tmp_path / "t", width=1.0, batch_size=8,
                             workers=0, max_steps=1))
    assert any((tmp_path / "t" / "tensorboard").iterdir())


def test_a_phase_alone_refuses_an_unfinished_predecessor(digits: Path, teacher: Path, tmp_path: Path) -> None:
    from compofa.supernet.train.schedule import ScheduleRequest, run_schedule

    phases = (small(0, epochs=2, warmup_epochs=0), small(1, epochs=1, subnets_per_step=1))
    base = TrainRequest(phases[0], digits, tmp_path, width=1.0, kernel_transform=False, batch_size=8, workers=0,
                        max_steps=1)

    def interrupt(epoch: int, step: int, losses: object) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_schedule(ScheduleRequest(phases, tmp_path / "run", base), on_step=interrupt)
    with pytest.raises(TrainError, match="phase 'teacher' in .* stopped after 1 of 2 epochs: finish it first"):
        run_schedule(ScheduleRequest(phases, tmp_path / "run", base, only=phases[1].name))
    assert not (tmp_path / "run" / phases[1].name).exists()
    given = dataclasses.replace(base, init=teacher, teacher=teacher)  # another start replaces the unfinished one
    epochs: list[tuple[int, int]] = []
    (result,) = run_schedule(ScheduleRequest(phases, tmp_path / "run", given, only=phases[1].name),
                             on_epoch=lambda epoch, steps: epochs.append((epoch, steps)))
    assert result.epochs_done == 1 and epochs == [(0, 1)]  # the progress bar's epoch and its steps
