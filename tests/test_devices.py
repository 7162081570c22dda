"""The device registry: backends load lazily, one at a time, and listing them imports no torch."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from compofa.devices import Availability, Backend, UnknownDeviceError, backend_names, get_backend, register_backend
from compofa.devices.registry import BUILTIN_BACKENDS
from compofa.errors import RegistryError


def python(code: str) -> object:
    """What `code` prints (JSON) in a fresh interpreter: what it imports is all its own."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(done.stdout)


def test_the_lut_backend_loads_alone_and_without_torch() -> None:
    loaded = python(
        "import json, sys; from compofa.devices import get_backend; get_backend('lut:note10'); "
        "mine = sorted(m for m in sys.modules if m.startswith('compofa.devices.')); "
        "print(json.dumps([mine, 'torch' in sys.modules]))"
    )
    assert loaded == [["compofa.devices.base", "compofa.devices.lut", "compofa.devices.registry"], False]


def test_listing_every_backend_and_its_availability_imports_no_torch() -> None:
    listed = python(
        "import json, sys; from compofa.devices import list_backends; "
        "rows = [(b.name, b.availability().ok) for b in list_backends()]; "
        "print(json.dumps([[name for name, _ in rows], 'torch' in sys.modules]))"
    )
    assert listed == [list(BUILTIN_BACKENDS), False]


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="reads an installed torch's build")
def test_the_cuda_backend_reads_torch_s_build_without_importing_it() -> None:
    build = python(
        "import json, sys; from compofa.devices import cuda; build = cuda._torch_build(); "
        "before = 'torch' in sys.modules; import torch; "
        "print(json.dumps([before, build, [torch.__version__, torch.version.cuda]]))"
    )
    assert isinstance(build, list)
    before, read, actual = build
    assert before is False and read == actual


def test_unknown_names_list_every_backend() -> None:
    known = "onnxruntime, openvino, litert, executorch, torch, cuda, tensorrt, lut"
    with pytest.raises(UnknownDeviceError, match=f"unknown device 'nope'; known: {known}"):
        get_backend("nope:1")


def test_registering_a_backend_under_a_taken_name_is_refused() -> None:
    backend = Backend("lut", "a second lut", lambda: Availability(True), get_backend("lut").factory)
    with pytest.raises(RegistryError, match="already registered"):
        register_backend(backend)
    assert backend_names()[: len(BUILTIN_BACKENDS)] == tuple(BUILTIN_BACKENDS)
