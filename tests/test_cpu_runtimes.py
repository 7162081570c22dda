"""The CPU runtimes people deploy with, each a real library: OpenVINO, LiteRT's interpreter, ExecuTorch.

Each times a real subnet, computes what ONNX Runtime computes on the same input, records its version and
threads in the fingerprint, profiles into a table from the command line (and LiteRT on a device reached over
ssh), refuses a precision or option it cannot do in one line, and says which extra to install when its library
is missing.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run
from compofa.devices import DeviceOptionError, Settings, get_backend, open_device
from compofa.jobs.profile import reference_spec
from compofa.sources.subnet import SubnetSource
from compofa.space import get_space
from compofa.tables.store import LatencyTable

#: The reference subnet a profile at 128 px times: lowering a subnet to ExecuTorch costs half a minute whatever
#: its size, so the command-line profile below finds this one lowered already.
SPEC = reference_spec(get_space("compofa"), [128])
QUICK = ("--resolution", "128", "--min-rounds", "1", "--max-rounds", "2", "--round-seconds", "0.03",
         "--target-ci", "0.5", "--quiet")

RUNTIMES = {
    "openvino": ("openvino", "pip install 'compofa[openvino]'"),
    "litert": ("ai_edge_litert", "pip install 'compofa[litert]'"),
    "executorch": ("executorch", "pip install 'compofa[executorch]'"),
}


def _needs(runtime: str) -> None:
    package, install = RUNTIMES[runtime]
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"the {package} package is not installed ({install})")
    if runtime == "executorch" and importlib.util.find_spec("torch") is None:
        pytest.skip("lowering to ExecuTorch needs PyTorch (pip install 'compofa[torch]')")


@pytest.fixture(scope="module", autouse=True)
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One export cache for the module: each runtime's model of SPEC is written (or lowered) once."""
    folder = tmp_path_factory.mktemp("cache")
    before = os.environ.get("COMPOFA_CACHE_DIR")
    os.environ["COMPOFA_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("COMPOFA_CACHE_DIR", None)
    else:
        os.environ["COMPOFA_CACHE_DIR"] = before


def _run_once(name: str, settings: Settings | None = None) -> tuple[Any, Any]:
    """(the device, the output of one timed run of SPEC on it)."""
    device = open_device(name, SubnetSource("compofa"), settings or Settings())
    handle = device.prepare(SPEC)
    try:
        samples = device.time(handle, 3)
        assert len(samples) == 3 and all(sample > 0 for sample in samples)
        return device, np.asarray(handle.output())
    finally:
        handle.close()
        device.close()


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_a_runtime_computes_what_onnx_runtime_computes_and_says_what_it_is(runtime: str) -> None:
    _needs(runtime)
    _, expected = _run_once("onnxruntime")
    device, output = _run_once(runtime)
    assert output.shape == expected.shape == (1, 1000)
    # the same subnet, weights and input: only the kernels' rounding differs
    assert np.max(np.abs(output - expected)) <= 1e-4 * max(1.0, float(np.max(np.abs(expected))))
    fingerprint = device.fingerprint()
    assert fingerprint["backend"] == runtime and fingerprint["threads"] == 1 and fingerprint["precision"] == "fp32"
    version = fingerprint[runtime]
    assert isinstance(version, str) and version[:1].isdigit()


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_a_runtime_profiles_into_a_table_from_the_command_line(runtime: str, tmp_path: Path) -> None:
    _needs(runtime)
    table = tmp_path / f"{runtime}.db"
    count = 1 if runtime == "executorch" else 2  # one more lowering, not two
    done = run("profile", "--device", runtime, "--table", str(table), "--limit", str(count), *QUICK)
    assert done.exit_code == 0, done.output
    with LatencyTable.open(table) as store:
        entries = store.entries()
        (row,) = store.devices()
    assert len(entries) == count and all(e.ci_low_ms <= e.median_ms <= e.ci_high_ms for e in entries)
    assert row.name == runtime and row.fingerprint["backend"] == runtime


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_a_precision_the_runtime_cannot_do_is_one_line(runtime: str, tmp_path: Path) -> None:
    _needs(runtime)
    if runtime == "openvino":
        import openvino as ov

        if "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            pytest.skip("this CPU computes fp16 in OpenVINO, so fp16 is not refused here")
    table = tmp_path / "t.db"
    refused = run("profile", "--device", runtime, "--precision", "fp16", "--table", str(table), "--limit", "1",
                  *QUICK)
    assert_one_line_error(refused, "fp16")
    assert not table.exists()


@pytest.mark.parametrize(("runtime", "option"), [("openvino", "hint=fastest"), ("openvino", "flavour=x"),
                                                 ("litert", "delegate=gpu"), ("executorch", "delegate=x")])
def test_an_option_the_runtime_does_not_take_is_refused(runtime: str, option: str) -> None:
    _needs(runtime)
    key, value = option.split("=")
    with pytest.raises(DeviceOptionError):
        open_device(runtime, SubnetSource("compofa"), Settings(options={key: value}))


def test_openvino_names_a_missing_target() -> None:
    _needs("openvino")
    with pytest.raises(DeviceOptionError, match="'NPU9' is not present here"):
        open_device("openvino:NPU9", SubnetSource("compofa"))


def test_litert_without_the_default_delegate_runs_the_reference_kernels() -> None:
    _needs("litert")
    device, output = _run_once("litert", Settings(options={"delegate": "none"}))
    _, expected = _run_once("onnxruntime")
    assert device.fingerprint()["delegate"] == "none"
    assert np.max(np.abs(output - expected)) <= 1e-4 * max(1.0, float(np.max(np.abs(expected))))


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_a_missing_library_says_which_extra_to_install(runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    package, install = RUNTIMES[runtime]
    backend = get_backend(runtime)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    status = backend.availability()
    assert not status.ok and install in status.reason and "\n" not in status.reason


def test_the_runtimes_tell_a_remote_device_which_file_to_send() -> None:
    assert {name: get_backend(name).model_format for name in ("onnxruntime", "openvino", "litert", "executorch")} \
        == {"onnxruntime": "onnx", "openvino": "onnx", "litert": "tflite", "executorch": "pte"}
