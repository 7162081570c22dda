"""The GPU backends (cuda, tensorrt) and the NVML reader.

Everything above the "on a GPU" line runs anywhere: availability reasons,
option parsing, cache naming, throttle-reason decoding, and the NVML reader
against a stand-in `pynvml` module. The tests below it time real subnets and
skip, saying why, where there is no NVIDIA GPU (or no TensorRT).
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest
import torch

from compofa.devices import DeviceOptionError, DeviceUnavailableError, Settings, list_backends, open_device
from compofa.devices import cuda, nvml, tensorrt_backend
from compofa.devices.cuda import CudaDevice, CudaOptions, parse_cuda_options
from compofa.devices.tensorrt_backend import TensorRtDevice, TensorRtOptions, parse_tensorrt_options
from compofa.space import get_space
from compofa.sources.subnet import SubnetSource

HAS_GPU = torch.cuda.is_available()
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU with a driver")
needs_tensorrt = pytest.mark.skipif(not (HAS_GPU and HAS_TENSORRT), reason="needs an NVIDIA GPU and the tensorrt package")
no_gpu_here = pytest.mark.skipif(HAS_GPU, reason="checks the answers given on a machine without a GPU")


# -- availability ----------------------------------------------------------------------


def test_backends_are_registered() -> None:
    names = [backend.name for backend in list_backends()]
    assert "cuda" in names and "tensorrt" in names


@no_gpu_here
@pytest.mark.parametrize("backend", [cuda, tensorrt_backend])
def test_unavailable_without_a_gpu_with_a_one_line_reason(backend: ModuleType) -> None:
    status = backend.availability()
    assert not status.ok
    assert status.reason and "\n" not in status.reason


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_tensorrt_reason_names_the_package() -> None:
    assert tensorrt_backend.availability().reason == (
        "the tensorrt package is not installed (pip install 'compofa[trt]'; needs an NVIDIA GPU)"
    )


def test_cuda_reason_for_a_torch_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.version, "cuda", None)
    status = cuda.availability()
    assert not status.ok and "without CUDA" in status.reason


def test_cuda_reason_for_hidden_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "CUDA_VISIBLE_DEVICES" in cuda.availability().reason


@no_gpu_here
@pytest.mark.parametrize("name", ["cuda", "cuda:1", "tensorrt"])
def test_open_device_explains_why_it_is_unavailable(name: str, tmp_path: Path) -> None:
    backend = cuda if name.startswith("cuda") else tensorrt_backend
    reason = backend.availability().reason
    source = SubnetSource("compofa", cache_dir=tmp_path)
    with pytest.raises(DeviceUnavailableError, match=re.escape(reason)):
        open_device(name, source, Settings(batch=64))


# -- options (pure) --------------------------------------------------------------------


def test_cuda_option_defaults() -> None:
    assert parse_cuda_options(Settings(batch=64)) == CudaOptions(device=0, cuda_graphs=False, lock_clocks_mhz=None)


def test_cuda_options_parsed() -> None:
    settings = Settings(batch=8, precision="fp16", options={"device": "1", "cuda_graphs": "true", "lock_clocks": "1410"})
    assert parse_cuda_options(settings) == CudaOptions(device=1, cuda_graphs=True, lock_clocks_mhz=1410)
    assert parse_cuda_options(Settings(options={"cuda_graphs": "OFF", "lock_clocks": "1410MHz"})) == CudaOptions(
        cuda_graphs=False, lock_clocks_mhz=1410
    )


def test_device_name_suffix_is_the_device_index() -> None:
    assert parse_cuda_options(Settings(options={"source": "2"})).device == 2
    assert parse_cuda_options(Settings(options={"source": "2", "device": "2"})).device == 2
    with pytest.raises(DeviceOptionError, match="different GPUs"):
        parse_cuda_options(Settings(options={"source": "2", "device": "1"}))


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        (Settings(options={"bogus": "1"}), "bogus"),
        (Settings(options={"timing_cache": "x"}), "timing_cache"),
        (Settings(precision="bf16"), "bf16"),  # int8 is the device's to check (QDQ models, tests/test_int8.py)
        (Settings(precision="bf16"), "bf16"),
        (Settings(options={"cuda_graphs": "maybe"}), "cuda_graphs"),
        (Settings(options={"device": "-1"}), "-1"),
        (Settings(options={"device": "gpu0"}), "gpu0"),
        (Settings(options={"lock_clocks": "0"}), "lock_clocks"),
        (Settings(options={"lock_clocks": "fast"}), "fast"),
        (Settings(batch=0), "batch"),
    ],
)
def test_bad_cuda_options_are_refused(settings: Settings, names: str) -> None:
    with pytest.raises(DeviceOptionError, match=re.escape(names)) as raised:
        parse_cuda_options(settings)
    assert "\n" not in str(raised.value)


def test_tensorrt_options() -> None:
    assert parse_tensorrt_options(Settings(batch=64)) == TensorRtOptions()
    parsed = parse_tensorrt_options(
        Settings(precision="fp16", options={"timing_cache": "/tmp/t.cache", "engine_cache": "no", "source": "1"})
    )
    assert parsed == TensorRtOptions(device=1, timing_cache="/tmp/t.cache", engine_cache=False)
    assert parse_tensorrt_options(Settings(options={"timing_cache": "OFF"})).timing_cache == "off"


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        (Settings(options={"cuda_graphs": "true"}), "cuda_graphs"),
        (Settings(options={"engine_cache": "sometimes"}), "engine_cache"),
        (Settings(precision="bf16"), "bf16"),  # int8 is the device's to check (QDQ models, tests/test_int8.py)
    ],
)
def test_bad_tensorrt_options_are_refused(settings: Settings, names: str) -> None:
    with pytest.raises(DeviceOptionError, match=re.escape(names)):
        parse_tensorrt_options(settings)


def test_timing_cache_file_name(tmp_path: Path) -> None:
    path = tensorrt_backend.default_timing_cache_path("NVIDIA GeForce RTX 2080 Ti", "10.3.0", tmp_path)
    assert path == tmp_path / "tensorrt" / "timing-NVIDIA-GeForce-RTX-2080-Ti-10.3.0.cache"


def test_engine_key_covers_graph_and_settings() -> None:
    build = {"precision": "fp32", "batch": 64, "tensorrt": "10.3.0"}
    key = tensorrt_backend.engine_key(b"graph", build)
    assert key == tensorrt_backend.engine_key(b"graph", dict(build))
    assert key != tensorrt_backend.engine_key(b"other graph", build)
    assert key != tensorrt_backend.engine_key(b"graph", build | {"precision": "fp16"})


# -- NVML ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "names"),
    [
        (0x0, []),
        (0x1, ["idle"]),
        (0x2, ["applications clocks setting"]),
        (0x4 | 0x40, ["sw power cap", "hw thermal slowdown"]),
        (0x8 | 0x10 | 0x20, ["hw slowdown", "sync boost", "sw thermal slowdown"]),
        (0x80 | 0x100, ["hw power brake slowdown", "display clocks setting"]),
        (0x1 | 0x10000, ["idle", "unknown 0x10000"]),
    ],
)
def test_throttle_reasons_decoded(mask: int, names: list[str]) -> None:
    assert nvml.decode_throttle_reasons(mask) == names


def test_cuda_version_format() -> None:
    assert nvml.format_cuda_version(12040) == "12.4"
    assert nvml.format_cuda_version(11080) == "11.8"


@no_gpu_here
def test_nvml_without_package_or_driver() -> None:
    nvml._nvml.cache_clear()
    assert nvml.gpu_readings(0) == {}
    identity = nvml.gpu_identity(0)
    assert list(identity) == ["nvml"] and ("nvidia-ml-py" in identity["nvml"] or "driver" in identity["nvml"])
    outcome = nvml.lock_clocks(0, 1410)
    assert not outcome and outcome.reason


class FakeNvml:
    """A stand-in for `pynvml` with one GPU; `fail` maps a function name to an NVML error code."""

    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__(value)
            self.value = value

    def __init__(self, fail: dict[str, int] | None = None, event_api: bool = True) -> None:
        self.fail = fail or {}
        self.calls: list[tuple[Any, ...]] = []
        if not event_api:
            setattr(self, "nvmlDeviceGetCurrentClocksEventReasons", None)

    def module(self) -> ModuleType:
        module = ModuleType("pynvml")
        for name in dir(self):
            if name.startswith(("nvml", "NVML")) and getattr(self, name) is not None:
                setattr(module, name, getattr(self, name))
        return module

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, *args))
        if name in self.fail:
            raise self.NVMLError(self.fail[name])

    def nvmlInit(self) -> None:
        self._call("nvmlInit")

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        self._call("nvmlDeviceGetHandleByIndex", index)
        return "handle"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        self._call("nvmlDeviceGetHandleByUUID", uuid)
        if not uuid.startswith("MIG-"):
            raise self.NVMLError(6)
        return "handle"

    def nvmlDeviceGetClockInfo(self, handle: str, kind: int) -> int:
        self._call("nvmlDeviceGetClockInfo", kind)
        return {1: 1410, 2: 1593}[kind]

    def nvmlDeviceGetTemperature(self, handle: str, sensor: int) -> int:
        self._call("nvmlDeviceGetTemperature", sensor)
        return 45

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        self._call("nvmlDeviceGetPowerUsage")
        return 250_500

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: str) -> int:
        self._call("nvmlDeviceGetCurrentClocksEventReasons")
        return 0x4 | 0x40

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: str) -> int:
        self._call("nvmlDeviceGetCurrentClocksThrottleReasons")
        return 0x1

    def nvmlDeviceGetName(self, handle: str) -> bytes:
        return b"NVIDIA GeForce RTX 2080 Ti"

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12040

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> Any:
        return type("Memory", (), {"total": 11 * 2**30})()

    def nvmlDeviceSetGpuLockedClocks(self, handle: str, low: int, high: int) -> None:
        self._call("nvmlDeviceSetGpuLockedClocks", low, high)

    def nvmlDeviceResetGpuLockedClocks(self, handle: str) -> None:
        self._call("nvmlDeviceResetGpuLockedClocks")


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Factory: install a `FakeNvml` as `pynvml` (NVML's cached start is reset around the test)."""

    def install(**kwargs: Any) -> FakeNvml:
        fake = FakeNvml(**kwargs)
        monkeypatch.setitem(sys.modules, "pynvml", fake.module())
        nvml._nvml.cache_clear()
        return fake

    yield install
    nvml._nvml.cache_clear()


def test_nvml_readings(fake_nvml: Any) -> None:
    fake_nvml()
    assert nvml.gpu_readings(0) == {
        "sm_clock_mhz": 1410,
        "mem_clock_mhz": 1593,
        "temperature_c": 45,
        "power_w": 250.5,
        "throttle_reasons": ["sw power cap", "hw thermal slowdown"],
    }


def test_nvml_old_bindings_use_the_throttle_reasons_call(fake_nvml: Any) -> None:
    fake_nvml(event_api=False)
    assert nvml.gpu_readings(0)["throttle_reasons"] == ["idle"]
    fake_nvml(fail={"nvmlDeviceGetCurrentClocksEventReasons": 13})  # old driver: function not found
    assert nvml.gpu_readings(0)["throttle_reasons"] == ["idle"]


def test_nvml_unsupported_reading_is_left_out(fake_nvml: Any) -> None:
    fake_nvml(fail={"nvmlDeviceGetPowerUsage": 3})
    readings = nvml.gpu_readings(0)
    assert "power_w" not in readings and readings["sm_clock_mhz"] == 1410


def test_nvml_identity(fake_nvml: Any) -> None:
    fake_nvml()
    assert nvml.gpu_identity(0) == {
        "name": "NVIDIA GeForce RTX 2080 Ti",
        "driver_version": "550.54.15",
        "cuda_driver_version": "12.4",
        "memory_mib": 11 * 1024,
    }


def test_nvml_finds_a_mig_slice_by_its_cuda_uuid(fake_nvml: Any) -> None:
    fake = fake_nvml()
    assert nvml.gpu_readings("GPU-1234")["sm_clock_mhz"] == 1410
    assert ("nvmlDeviceGetHandleByUUID", "MIG-1234") in fake.calls


@pytest.mark.parametrize(("code", "words"), [(12, "no NVIDIA driver"), (9, "not loaded"), (999, "NVML failed")])
def test_nvml_without_a_driver(fake_nvml: Any, code: int, words: str) -> None:
    fake_nvml(fail={"nvmlInit": code})
    assert nvml.gpu_readings(0) == {}
    assert words in nvml.gpu_identity(0)["nvml"]
    assert nvml.nvml_status() == (False, nvml.gpu_identity(0)["nvml"])


def test_clock_lock_without_permission_is_a_reason_not_a_crash(fake_nvml: Any) -> None:
    fake_nvml(fail={"nvmlDeviceSetGpuLockedClocks": 4, "nvmlDeviceResetGpuLockedClocks": 4})
    locked = nvml.lock_clocks(0, 1410)
    assert not locked and "permission" in locked.reason
    assert not nvml.reset_clocks(0)
    lock = cuda.ClockLock(0, 1410)
    assert lock.locked_mhz is None and "permission" in lock.note
    lock.release()


def test_clock_lock_is_released_once(fake_nvml: Any) -> None:
    fake = fake_nvml()
    assert not nvml.lock_clocks(0, 0)
    lock = cuda.ClockLock(0, 1410)
    assert lock.locked_mhz == 1410 and lock.note == ""
    assert ("nvmlDeviceSetGpuLockedClocks", 1410, 1410) in fake.calls
    lock.release()
    lock.release()
    assert fake.calls.count(("nvmlDeviceResetGpuLockedClocks",)) == 1


# -- on a GPU --------------------------------------------------------------------------

SMALL_BATCH = 8


@pytest.fixture
def small_spec() -> Any:
    return get_space("compofa").smallest(160)


def _check_samples(samples: list[float], n: int) -> None:
    assert len(samples) == n
    assert all(math.isfinite(value) and value > 0 for value in samples)


@needs_gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("cuda_graphs", ["false", "true"])
def test_cuda_times_a_subnet(tmp_path: Path, small_spec: Any, precision: str, cuda_graphs: str) -> None:
    source = SubnetSource("compofa", cache_dir=tmp_path)
    settings = Settings(batch=SMALL_BATCH, precision=precision, options={"cuda_graphs": cuda_graphs})
    device = open_device("cuda", source, settings)
    assert isinstance(device, CudaDevice)
    handle = device.prepare(small_spec)
    _check_samples(device.time(handle, 5), 5)
    handle.close()
    with pytest.raises(ValueError, match="closed"):
        device.time(handle, 1)
    device.close()


@needs_gpu
def test_cuda_fingerprint_and_conditions(tmp_path: Path) -> None:
    device = open_device("cuda", SubnetSource("compofa", cache_dir=tmp_path), Settings(batch=SMALL_BATCH))
    fingerprint = device.fingerprint()
    for key in ("gpu", "driver", "cuda_runtime", "torch", "cudnn", "batch", "precision", "cuda_graphs"):
        assert key in fingerprint
    assert fingerprint["sm_clock_locked_mhz"] is None and fingerprint["batch"] == SMALL_BATCH
    conditions = device.conditions()
    if nvml.nvml_status()[0]:
        assert {"sm_clock_mhz", "temperature_c", "throttle_reasons"} <= set(conditions)
        assert all(isinstance(name, str) for name in conditions["throttle_reasons"])
    else:
        assert conditions == {}


@needs_tensorrt
def test_tensorrt_reuses_its_timing_cache(tmp_path: Path, small_spec: Any) -> None:
    source = SubnetSource("compofa", cache_dir=tmp_path / "onnx")
    timing_cache = tmp_path / "timing.cache"
    options = {"timing_cache": str(timing_cache), "engine_cache": "false"}
    device = open_device("tensorrt", source, Settings(batch=SMALL_BATCH, options=options))
    assert isinstance(device, TensorRtDevice)
    first = device.prepare(small_spec)
    _check_samples(device.time(first, 5), 5)
    first.close()
    assert timing_cache.stat().st_size > 0 and device.timing_cache_reuses == 0
    second = device.prepare(small_spec)
    second.close()
    assert device.builds == 2 and device.timing_cache_reuses == 1


@needs_tensorrt
def test_tensorrt_engine_cache_fp16(tmp_path: Path, small_spec: Any) -> None:
    source = SubnetSource("compofa", cache_dir=tmp_path / "onnx")
    settings = Settings(batch=SMALL_BATCH, precision="fp16", cache_dir=tmp_path / "cache")
    device = open_device("tensorrt", source, settings)
    assert isinstance(device, TensorRtDevice)
    for _ in range(2):
        handle = device.prepare(small_spec)
        _check_samples(device.time(handle, 3), 3)
        handle.close()
    assert device.builds == 1 and device.engine_cache_hits == 1
    assert device.timing_cache_path is not None and device.timing_cache_path.is_file()
    assert device.timing_cache_path.is_relative_to(tmp_path / "cache" / "tensorrt")
    assert device.fingerprint()["precision"] == "fp16"


@needs_tensorrt
def test_tensorrt_keeps_no_cache_without_a_folder(tmp_path: Path, small_spec: Any) -> None:
    """The backend never picks a folder itself: without `Settings.cache_dir` nothing is kept."""
    device = open_device("tensorrt", SubnetSource("compofa", cache_dir=tmp_path), Settings(batch=SMALL_BATCH))
    assert isinstance(device, TensorRtDevice)
    assert device.timing_cache_path is None and device.engine_folder is None
    device.prepare(small_spec).close()
    assert device.builds == 1


def _time_every_layer(device_name: str, tmp_path: Path, precision: str = "fp32") -> None:
    """Every distinct compofa layer at 160, as `compofa lut build` hands them to the device."""
    from compofa.space import get_space as space_of
    from compofa.sources.layers import LayerSource
    from compofa.lut.layers import distinct_layers

    source = LayerSource(space_of("compofa").family, 1.2, tmp_path)
    device = open_device(device_name, source, Settings(batch=SMALL_BATCH, precision=precision))
    try:
        for layer in distinct_layers("compofa", 1.2, [160]):
            handle = device.prepare(layer)
            _check_samples(device.time(handle, 3), 3)
            handle.close()
    finally:
        device.close()


@needs_gpu
def test_cuda_times_every_layer_of_a_lut(tmp_path: Path) -> None:
    _time_every_layer("cuda", tmp_path)


@needs_tensorrt
def test_tensorrt_times_every_layer_of_a_lut(tmp_path: Path) -> None:
    _time_every_layer("tensorrt", tmp_path, "fp16")
