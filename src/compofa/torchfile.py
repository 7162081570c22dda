"""Read the tensors of a PyTorch file (`torch.save`) as numpy arrays, without PyTorch.

Search's shipped accuracy predictor is such a file, and the torch-free core has
to read it. Both formats `torch.save` has written are read: the zip archive
(PyTorch 1.6 and later: ``NAME/data.pkl`` plus one ``NAME/data/KEY`` entry per
storage) and the legacy stream before it (magic number, protocol, system info,
the pickle, the storage keys, then each storage as an int64 element count and
its bytes), which is what the shipped predictor uses.

A pickle can run any callable it names, so the unpickler here allows exactly
what a file of tensors needs: `torch._utils._rebuild_tensor_v2` (and
`_rebuild_parameter`, for a state_dict kept as parameters),
`collections.OrderedDict` and the typed storage classes (``torch.FloatStorage``
...), which it replaces by its own numpy code. Anything else (a whole pickled
model, a custom class, a tensor subclass, a sparse or quantized tensor) is
refused with `TorchFileError` before it is built. Tensors come back as writable, contiguous
numpy arrays; dicts, lists and tuples keep their shape.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compofa.errors import CompofaError

#: numpy dtypes of the storage classes torch pickles by name. bfloat16 has no
#: numpy type: its 16 bits are widened to float32, which holds every value exactly.
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "u2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexDoubleStorage": "c16",
    "ComplexFloatStorage": "c8",
}

# The first object of a legacy stream (torch.serialization.MAGIC_NUMBER) and its format version.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_2 = b"\x80\x02"


class TorchFileError(CompofaError):
    """A PyTorch file that is corrupt, or holds more than tensors and containers."""


@dataclass
class _Storage:
    """One storage of the file: its element type and count now, its values once read."""

    name: str
    key: str
    numel: int
    values: np.ndarray | None = None

    def __setstate__(self, state: object) -> None:  # a pickle must not reach into our objects
        raise pickle.UnpicklingError("the file modifies an internal object")


@dataclass
class _Tensor:
    """A tensor whose storage is read after the pickle (the legacy format stores it behind)."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    extra: tuple[Any, ...] = field(default=())

    def __setstate__(self, state: object) -> None:
        raise pickle.UnpicklingError("the file modifies an internal object")


@dataclass(frozen=True)
class _StorageClass:
    """What ``torch.FloatStorage`` and friends unpickle to: a name for persistent_load."""

    name: str

    def __call__(self, *args: object) -> None:  # the real classes are callable; these never are
        raise pickle.UnpicklingError(f"the file constructs a torch.{self.name} directly")


def load(data: bytes) -> Any:
    """The object `torch.save` wrote into `data`, with every tensor as a numpy array.

    Raises:
        TorchFileError: not a PyTorch file, corrupt or truncated, or holding
            objects other than tensors, dicts (OrderedDicts), lists, tuples,
            strings and numbers.
    """
    if data.startswith(_ZIP_MAGIC):
        return _load_zip(data)
    if data.startswith(_PICKLE_PROTOCOL_2):
        return _load_legacy(data)
    raise TorchFileError("it is not a PyTorch file (neither a torch.save zip archive nor a legacy stream)")


def _load_zip(data: bytes) -> Any:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("data.pkl") and name.count("/") <= 1]
        if len(pickles) != 1:
            raise TorchFileError("the PyTorch archive has no data.pkl (or several); it is not a torch.save file")
        prefix = pickles[0][: -len("data.pkl")]
        order = archive.read(f"{prefix}byteorder").decode() if f"{prefix}byteorder" in names else "little"
        if order not in ("little", "big"):
            raise TorchFileError(f"the PyTorch archive names an unknown byte order {order!r}")
        result, storages = _unpickle(io.BytesIO(archive.read(pickles[0])))
        for storage in storages.values():
            entry = f"{prefix}data/{storage.key}"
            if entry not in names:
                raise TorchFileError(f"the PyTorch archive lacks the storage {entry}; it is truncated")
            storage.values = _storage_values(archive.read(entry), storage, order)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise TorchFileError(f"the PyTorch archive is corrupt or truncated ({_brief(error)})") from None
    return _materialize(result)


def _load_legacy(data: bytes) -> Any:
    stream = io.BytesIO(data)
    try:
        if _plain_pickle(stream) != _LEGACY_MAGIC:
            raise TorchFileError("it is not a PyTorch file (a pickle without torch.save's header)")
        protocol, system = _plain_pickle(stream), _plain_pickle(stream)
        if protocol != _LEGACY_PROTOCOL or not isinstance(system, dict):
            raise TorchFileError(f"it is a PyTorch file of an unknown legacy version ({str(protocol)[:20]})")
        order = "little" if system.get("little_endian", True) else "big"
        result, storages = _unpickle(stream)
        keys = _plain_pickle(stream)
        if not isinstance(keys, list) or set(keys) != set(storages):
            raise TorchFileError("the PyTorch file's storage list does not match its tensors; it is corrupt")
        for key in keys:
            storage = storages[key]
            header = stream.read(8)
            if len(header) != 8:
                raise EOFError("the storages end early")
            (count,) = struct.unpack("<q" if order == "little" else ">q", header)
            if count != storage.numel:
                raise TorchFileError(f"storage {key} holds {count} elements where the file declares {storage.numel}")
            size = count * np.dtype(STORAGE_DTYPES[storage.name]).itemsize
            storage.values = _storage_values(stream.read(size), storage, order)
    except (EOFError, ValueError, struct.error) as error:
        raise TorchFileError(f"the PyTorch file is corrupt or truncated ({_brief(error)})") from None
    return _materialize(result)


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds nothing but containers, strings, numbers and the three kinds of names a tensor file uses."""

    def __init__(self, stream: io.BytesIO, persistent: Callable[[Any], Any] | None = None) -> None:
        super().__init__(stream)
        self._persistent = persistent

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageClass(name)
        raise TorchFileError(f"it holds Python objects besides tensors ({module}.{name}: a whole model?)")

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise pickle.UnpicklingError("a storage outside the tensor pickle")
        return self._persistent(pid)


def _plain_pickle(stream: io.BytesIO) -> Any:
    """One of the legacy stream's pickles around the tensors: numbers, a dict, a list of keys."""
    try:
        return _RestrictedUnpickler(stream).load()
    except TorchFileError:
        raise
    except Exception as error:  # noqa: BLE001 - pickle raises many types for bad input
        raise TorchFileError(f"the PyTorch file is corrupt or truncated ({_brief(error)})") from None


def _unpickle(stream: io.BytesIO) -> tuple[Any, dict[str, _Storage]]:
    """The pickled object (tensors still waiting for their values) and its storages by key."""
    storages: dict[str, _Storage] = {}

    def storage_for(pid: Any) -> _Storage:
        # zip: ('storage', class, key, location, numel); legacy adds a view: (..., numel, None)
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise TorchFileError(f"it holds a persistent object other than a tensor storage ({str(pid)[:40]})")
        kind, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(kind, _StorageClass) or not isinstance(key, str) or not _is_count(numel):
            raise pickle.UnpicklingError("a malformed storage reference")
        if len(pid) == 6 and pid[5] is not None:
            raise TorchFileError("it holds storage views (a PyTorch 0.3 file); load and save it again with torch")
        known = storages.setdefault(key, _Storage(kind.name, key, numel))
        if (known.name, known.numel) != (kind.name, numel):
            raise pickle.UnpicklingError(f"storage {key} is declared twice, differently")
        return known

    try:
        result = _RestrictedUnpickler(stream, storage_for).load()
    except TorchFileError:
        raise
    except Exception as error:  # noqa: BLE001 - pickle raises many types for bad input
        raise TorchFileError(f"the PyTorch pickle is corrupt or truncated ({_brief(error)})") from None
    return result, storages


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *extra: Any) -> _Tensor:
    """Stands in for torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, ...)."""
    if not isinstance(storage, _Storage) or not _is_count(offset):
        raise pickle.UnpicklingError("a tensor without a storage")
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and all(_is_count(value) for value in size + stride)):
        raise pickle.UnpicklingError("a tensor with a malformed shape or stride")
    return _Tensor(storage, offset, size, stride, extra)


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, *extra: Any) -> _Tensor:
    """Stands in for torch._utils._rebuild_parameter: an nn.Parameter is its tensor here."""
    if not isinstance(data, _Tensor):
        raise pickle.UnpicklingError("a parameter without a tensor")
    return data


def _storage_values(raw: bytes, storage: _Storage, order: str) -> np.ndarray:
    code = STORAGE_DTYPES[storage.name]
    stored = np.dtype(code).newbyteorder("<" if order == "little" else ">")
    if len(raw) != storage.numel * stored.itemsize:
        raise TorchFileError(f"storage {storage.key} has {len(raw)} bytes where {storage.numel} elements of "
                             f"{storage.name} need {storage.numel * stored.itemsize}; the file is truncated")
    values = np.frombuffer(raw, dtype=stored).astype(np.dtype(code), copy=False)
    if storage.name == "BFloat16Storage":  # the upper half of a float32
        values = (values.astype(np.uint32) << 16).view(np.float32)
    return values


def _tensor_values(tensor: _Tensor) -> np.ndarray:
    values = tensor.storage.values
    assert values is not None, "every storage is read before the tensors are built"
    if 0 in tensor.size:
        return np.empty(tensor.size, dtype=values.dtype)
    last = tensor.offset + sum((n - 1) * step for n, step in zip(tensor.size, tensor.stride))
    if last >= values.size:
        raise TorchFileError(f"a tensor of shape {list(tensor.size)} reaches past its storage {tensor.storage.key} "
                             f"({values.size} elements); the file is corrupt")
    view = np.lib.stride_tricks.as_strided(
        values[tensor.offset:], shape=tensor.size, strides=tuple(step * values.itemsize for step in tensor.stride),
    )
    return np.array(view, copy=True, order="C")


def _materialize(value: Any) -> Any:
    """`value` with every waiting tensor replaced by its array (containers rebuilt, OrderedDicts kept)."""
    if isinstance(value, _Tensor):
        return _tensor_values(value)
    if isinstance(value, _Storage):
        raise TorchFileError("it holds a bare storage rather than tensors; save tensors instead")
    if isinstance(value, dict):
        rebuilt = type(value)((key, _materialize(item)) for key, item in value.items())
        if isinstance(value, collections.OrderedDict):
            rebuilt.__dict__.update(vars(value))  # a module state_dict's _metadata
        return rebuilt
    if isinstance(value, list):
        return [_materialize(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_materialize(item) for item in value)
    return value


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _brief(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:80]
