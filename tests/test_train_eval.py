"""Measured accuracy: BatchNorm recalibration, top-1/top-5 into the table store, resumable, and refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_helpers import assert_one_line_error, run
from compofa.search.arrays import ArchBatch
from compofa.search.predictor import AccuracyError, TableAccuracy
from compofa.space import get_space, parse_spec
from compofa.supernet import Supernet, save_checkpoint
from compofa.supernet.train.data import write_digits
from compofa.tables import LatencyTable


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    write_digits(root / "digits", val_share=0.05)
    torch.manual_seed(0)
    save_checkpoint(Supernet("mobilenetv3", 1.0), root / "w.pt")
    return root / "digits", root / "w.pt"


def test_eval_writes_accuracy_rows_that_search_reads(setup: tuple[Path, Path], tmp_path: Path) -> None:
    data, weights = setup
    table = tmp_path / "acc.db"
    args = ("eval", "--checkpoint", str(weights), "--space", "compofa", "--data", str(data), "--resolution", "128",
            "--sample", "2", "--table", str(table), "--bn-images", "16", "--batch", "32",
            "--workers", "0", "--quiet")
    first = run(*args)
    assert first.exit_code == 0 and "evaluated 2 subnets" in first.stdout, first.output
    with LatencyTable.open(table) as store:
        rows = store.accuracies("compofa", 1.0)
    assert len(rows) == 2 and all(0 <= top1 <= 1 for top1 in rows.values())
    assert run(*args).stdout.startswith("all 2 subnets already evaluated")  # memoized per weights
    source = TableAccuracy(table, "compofa", 1.0)  # what `compofa search --accuracy table:PATH` reads
    evaluated = [parse_spec(text) for text in rows]
    assert list(source.accuracy(ArchBatch.from_specs(evaluated))) == pytest.approx(list(rows.values()))
    other = next(s for s in get_space("compofa").enumerate([128]) if str(s) not in rows)
    with pytest.raises(AccuracyError):  # a subnet without a row is refused, never guessed
        source.accuracy(ArchBatch.from_specs([other]))


def test_eval_refusals(setup: tuple[Path, Path], tmp_path: Path) -> None:
    data, weights = setup
    base = ("eval", "--data", str(data), "--resolution", "128", "--sample", "1", "--table", str(tmp_path / "a.db"))
    assert_one_line_error(run(*base, "--checkpoint", str(tmp_path / "none.pt")), "does not exist")
    assert_one_line_error(run(*base, "--checkpoint", str(weights), "--space", "ofa-proxyless"),
                          "mobilenetv3 family, not proxylessnas")
    assert_one_line_error(run(*base, "--checkpoint", str(weights), "--resolution", "100"), "resolution 100")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert_one_line_error(run(*base, "--checkpoint", str(tmp_path / "junk.pt")), "not a PyTorch checkpoint")
    assert_one_line_error(run("eval", "--checkpoint", str(weights), "--data", str(tmp_path)), "has no train/ folder")
    assert_one_line_error(run(*base, "--checkpoint", str(weights), "--torch-device", "tpu"),
                          "unknown device 'tpu'")
    trained = tmp_path / "compound.pt"  # as `compofa train` writes it after a CompOFA phase
    torch.save({**torch.load(weights, weights_only=True), "training": {"phase": {"space": "compofa"}}}, trained)
    assert_one_line_error(run(*base, "--checkpoint", str(trained), "--space", "ofa-mbv3"),
                          "trained on space 'compofa'")
    assert not (tmp_path / "a.db").exists()


def test_predictor_train_fits_the_rows_and_search_uses_it(tmp_path: Path) -> None:
    import numpy as np

    from compofa.search.predictor import AccuracyPredictor

    specs = list(get_space("compofa").enumerate([160]))[:60]
    truth = AccuracyPredictor.shipped().predict(ArchBatch.from_specs(specs))  # stands in for measured rows
    table = tmp_path / "acc.db"
    with LatencyTable.open(table, writable=True, create=True) as store:
        for spec, top1 in zip(specs, truth):
            store.put_accuracy("compofa", 1.2, str(spec), 160, "w.pt:abc", float(top1), None, 100, {})
    result = run("predictor", "train", "--table", str(table), "--epochs", "30", "-o", str(tmp_path / "p.pth"))
    assert result.exit_code == 0 and "trained on 48 subnets" in result.stdout, result.output
    fitted = AccuracyPredictor.load(tmp_path / "p.pth", "mobilenetv3")
    error = np.abs(fitted.predict(ArchBatch.from_specs(specs)) - truth)
    assert float(np.sqrt((error ** 2).mean())) < 0.05
    searched = run("search", "--latency", "flops", "--accuracy", f"predictor:{tmp_path / 'p.pth'}", "--target", "50%",
                   "--resolution", "160", "--json")
    assert searched.exit_code == 0, searched.output
    assert_one_line_error(run("predictor", "train", "--table", str(table), "--width", "1.0", "-o",
                              str(tmp_path / "q.pth")), "has 0 compofa accuracy rows at width 1", "compofa eval")


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun is not installed beside this Python")
def test_eval_under_torchrun_splits_the_subnets_and_one_process_writes(setup: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    """Two gloo processes share 5 subnets (3 and 2); the first alone writes the table, and the rows equal a
    single process's evaluation of the same subnets; a rerun finds them all there."""
    data, weights = setup
    table, alone = tmp_path / "acc.db", tmp_path / "alone.db"
    args = ["eval", "--checkpoint", str(weights), "--space", "compofa", "--data", str(data), "--resolution", "128",
            "--sample", "5", "--bn-images", "16", "--batch", "32", "--workers", "0", "--quiet"]
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m",
                "compofa"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*torchrun, *args, "--table", str(table)], capture_output=True, text=True, timeout=600,
                          env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("evaluated 5 subnets") == 1, done.stdout  # the first process speaks for both
    assert run(*args, "--table", str(alone)).exit_code == 0
    with LatencyTable.open(table) as split, LatencyTable.open(alone) as single:
        assert split.accuracies("compofa", 1.0) == pytest.approx(single.accuracies("compofa", 1.0))
        assert len(split.accuracies("compofa", 1.0)) == 5
    again = subprocess.run([*torchrun, *args, "--table", str(table)], capture_output=True, text=True, timeout=600,
                           env=environment)
    assert again.returncode == 0 and again.stdout.count("all 5 subnets already evaluated") == 1, again.stdout


def test_the_ranks_share_the_subnets_in_rounds() -> None:
    """Round k gives rank r subnet k * world + r: disjoint shares that cover everything, the last round padded."""
    from compofa.jobs.evaluate import _share
    from compofa.supernet.train.distributed import Ranks

    specs = list(get_space("compofa").enumerate([128]))[:5]
    shares = [_share(specs, Ranks(rank, 2, rank)) for rank in (0, 1)]
    assert shares == [[specs[0], specs[2], specs[4]], [specs[1], specs[3], None]]
    assert _share(specs, Ranks()) == specs and _share([], Ranks(1, 3, 1)) == []
