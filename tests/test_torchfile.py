"""compofa.torchfile reads what torch.save writes, as torch.load does, and refuses to run anything else."""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compofa import torchfile
from compofa.errors import CompofaError
from compofa.search.predictor import SHIPPED_RESOURCE

torch = pytest.importorskip("torch")


def _saved(value: Any, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def _assert_same(mine: Any, theirs: Any) -> None:
    """`mine` (numpy) holds what `theirs` (torch.load) holds, container types and dtypes included."""
    if isinstance(theirs, torch.Tensor):
        expected = theirs.float().numpy() if theirs.dtype == torch.bfloat16 else theirs.numpy()
        assert isinstance(mine, np.ndarray) and mine.dtype == expected.dtype and mine.shape == expected.shape
        assert np.array_equal(mine, expected) and mine.flags.c_contiguous and mine.flags.writeable
    elif isinstance(theirs, dict):
        assert type(mine) is type(theirs) and list(mine) == list(theirs)
        for key in theirs:
            _assert_same(mine[key], theirs[key])
    elif isinstance(theirs, (list, tuple)):
        assert type(mine) is type(theirs) and len(mine) == len(theirs)
        for a, b in zip(mine, theirs):
            _assert_same(a, b)
    else:
        assert mine == theirs


def test_shipped_predictor_reads_as_torch_reads_it() -> None:
    """The shipped file (PyTorch's legacy format, saved on a GPU) gives torch.load's tensors, bit for bit."""
    data = resources.files("compofa.data").joinpath(SHIPPED_RESOURCE).read_bytes()
    mine = torchfile.load(data)
    theirs = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    _assert_same(mine, theirs)
    assert [value.shape for value in mine.values()][:2] == [(400, 128), (400,)]


def _mixed() -> dict[str, Any]:
    grid = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    return {
        "transposed": grid.t(),
        "slice": grid[1:, 2:5],  # an offset into a shared storage, with strides
        "half": torch.linspace(-2, 2, 7).half(),
        "bfloat16": torch.linspace(-3, 3, 5).bfloat16(),
        "long": torch.arange(5),
        "int8": torch.tensor([-3, 4], dtype=torch.int8),
        "bool": torch.tensor([True, False]),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(3.5),
        "nested": [grid[0], (grid[1], "text", 7, 1.5, None)],
        "state_dict": torch.nn.Linear(3, 2).state_dict(),
    }


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_both_formats_read_as_torch_reads_them(legacy: bool) -> None:
    data = _saved(_mixed(), legacy)
    _assert_same(torchfile.load(data), torch.load(io.BytesIO(data), weights_only=True))


def test_module_metadata_and_parameters_survive() -> None:
    linear = torch.nn.Linear(3, 2)
    state = torchfile.load(_saved(linear.state_dict()))
    assert isinstance(state, collections.OrderedDict) and state._metadata == linear.state_dict()._metadata
    kept = torchfile.load(_saved(linear.state_dict(keep_vars=True)))  # nn.Parameter values
    assert np.array_equal(kept["weight"], linear.weight.detach().numpy())


class _RunsCode:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("this must never run",))


@pytest.mark.parametrize("value, fragment", [
    (torch.nn.Linear(2, 2), "torch.nn.modules.linear.Linear"),
    ({"tensor": torch.zeros(2), "code": _RunsCode()}, "print"),
    ({"when": collections.Counter("ab")}, "collections.Counter"),
    (torch.zeros(3).to_sparse(), "Python objects besides tensors"),
])
def test_anything_but_tensors_is_refused_before_it_runs(value: Any, fragment: str, capsys: Any) -> None:
    for legacy in (False, True):
        with pytest.raises(torchfile.TorchFileError, match=fragment) as caught:
            torchfile.load(_saved(value, legacy))
        assert "\n" not in str(caught.value) and isinstance(caught.value, CompofaError)
    assert "must never run" not in capsys.readouterr().out


def _zip_with(data: bytes, name: str, replace: bytes | None) -> bytes:
    """`data` (a torch.save archive) with entry `name` replaced, or dropped when `replace` is None."""
    source, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for entry in source.namelist():
            if not entry.endswith(name):
                target.writestr(entry, source.read(entry))
            elif replace is not None:
                target.writestr(entry, replace)
    return out.getvalue()


def _bad_files() -> dict[str, tuple[bytes, str]]:
    good = _saved({"w": torch.ones(4, 4)})
    legacy = _saved({"w": torch.ones(4, 4)}, legacy=True)
    storage = next(name for name in zipfile.ZipFile(io.BytesIO(good)).namelist() if "/data/" in name)
    return {
        "garbage": (b"not a torch file", "not a PyTorch file"),
        "empty": (b"", "not a PyTorch file"),
        "plain pickle": (pickle.dumps({"a": 1}, protocol=2), "without torch.save's header"),
        "truncated zip": (good[: len(good) // 2], "archive is corrupt or truncated"),
        "truncated legacy": (legacy[:-10], "the file is truncated"),
        "legacy cut in the pickle": (legacy[:300], "corrupt or truncated"),
        "missing storage": (_zip_with(good, storage.split("/", 1)[1], None), "lacks the storage"),
        "short storage": (_zip_with(good, storage.split("/", 1)[1], b"\0" * 8), "the file is truncated"),
        "odd byte order": (_zip_with(good, "/byteorder", b"middle"), "unknown byte order"),
    }


@pytest.mark.parametrize("case", sorted(_bad_files()))
def test_damaged_files_are_one_line_errors(case: str) -> None:
    data, fragment = _bad_files()[case]
    with pytest.raises(torchfile.TorchFileError, match=fragment) as caught:
        torchfile.load(data)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 160


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path: Path) -> None:
    """A pickle that declares a view larger than its storage cannot read beyond the bytes it owns."""
    data = _saved({"w": torch.ones(2, 2)})
    archive = zipfile.ZipFile(io.BytesIO(data))
    name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
    tampered = archive.read(name).replace(b"K\x02K\x02\x86", b"K\x09K\x02\x86")  # size (2, 2) -> (9, 2)
    assert tampered != archive.read(name)
    with pytest.raises(torchfile.TorchFileError, match="reaches past its storage"):
        torchfile.load(_zip_with(data, "data.pkl", tampered))
