"""Measured accuracy: BatchNorm recalibration, top-1/top-5 into the table store, resumable, and refusals."""

from __future__ import annotations

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
            "--sample", "2", "--table", str(table), "--calibration-images", "16", "--batch-size", "32",
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
