"""TensorRT on an NVIDIA GPU: each item's ONNX graph built into an engine and timed.

`prepare` takes the item's ONNX file (a subnet's, or one layer's) from its
source (``source.onnx(item, batch)``), has TensorRT build an engine from it (fp32, or
fp16 kernels where faster with ``BuilderFlag.FP16``; inputs and outputs stay
fp32), binds one device buffer per input and output with the TensorRT 10
tensor-address API, and runs it once so that lazy set-up is not timed. A timed
run is one ``execute_async_v3`` on a CUDA stream between two CUDA events, read
after synchronizing on the end event, as in the cuda backend.

Building is the slow part (seconds to minutes a subnet: TensorRT times the
candidate kernels of every layer), so two caches persist across runs:
- the timing cache, one file per GPU model and TensorRT version, reloaded
  before and saved (atomically, merged with what is on disk) after each
  build: later builds reuse the kernel timings of every layer already seen,
  and the 243 CompOFA subnets share most of their layers;
- the engine cache (option ``engine_cache``, on by default): engines keyed
  by the ONNX graph's bytes and everything the build depends on, so a later
  round or run deserializes instead of rebuilding (and measures the same
  kernels, not a fresh tactic choice).

Options (``--option key=value``):
    device, lock_clocks: as for the cuda backend (``tensorrt:1`` is device 1).
    timing_cache: the timing cache file (default:
        ``<cache>/tensorrt/timing-<gpu>-<tensorrt version>.cache``), or ``off``.
    engine_cache: true/false (default true); engines live in
        ``<cache>/tensorrt/engines``.
``<cache>`` is `Settings.cache_dir`: the jobs that open devices pass the ONNX
export cache's folder, so engines sit beside the graphs they are built from.
The backend picks no folder itself: without one, the default timing cache and
the engine cache are off. The CLI's default batch for this backend is 64
(`compofa.devices.cuda.DEFAULT_BATCH`).

Precision int8 is explicit quantization: TensorRT builds the item's QDQ ONNX
model (`devices.base.Int8Source`: the fp32 graph quantized by ONNX Runtime's
quantizer on the calibration images, with symmetric int8 activations and
full-range per-channel weights, the only int8 form TensorRT takes) into a
strongly typed network, whose Q/DQ pairs decide where int8 kernels run. That is
what TensorRT 10 recommends: its calibrators (IInt8EntropyCalibrator2 and the
implicit quantization they drive) are deprecated since 10.1 and removed in 11,
and the calibration lives in the QDQ file, cached content-addressed beside the
fp32 graphs (the role a calibration cache played), so a rebuild never
calibrates again and every backend that reads QDQ runs the same ranges.

TensorRT is optional (``pip install 'compofa[trt]'``) and imported only here,
torch (for CUDA streams and buffers) only when a device is built.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import importlib.util
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic

from compofa.devices.base import (
    Availability,
    Backend,
    Int8Source,
    ItemT,
    ModelSource,
    Quantization,
    Settings,
    int8_quantization,
)
from compofa.devices.cuda import (
    DEFAULT_BATCH,
    ClockLock,
    check_device_index,
    check_gpu_settings,
    gpu_fingerprint,
    nvml_gpu,
    parse_device_index,
    parse_flag,
    parse_mhz,
    require_cuda,
    time_runs,
)
from compofa.devices.cuda import (
    availability as cuda_availability,
)
from compofa.devices.meters import ENERGY, MEMORY, Meters
from compofa.devices.nvml import energy_counter, gpu_readings
from compofa.errors import CompofaError
from compofa.fileio import atomic_output, write_bytes_atomic

if TYPE_CHECKING:
    import torch

MISSING_PACKAGE = "the tensorrt package is not installed (pip install 'compofa[trt]'; needs an NVIDIA GPU)"
#: Bumped when the way engines are built changes, so that cached engines are rebuilt.
BUILDER_VERSION = 1


def tensorrt_recipe(quantization: Quantization) -> Quantization:
    """The int8 model TensorRT takes: symmetric int8 activations (zero point 0) and full-range int8 weights (no
    16-bit accumulation to spare on a GPU), calibrated on the same images."""
    return dataclasses.replace(quantization, activations="int8", weights="int8", symmetric_activations=True,
                               reduce_range=False)


class TensorRtError(CompofaError):
    """TensorRT could not parse, build, load or run a subnet's engine."""


# -- availability and options (pure) ------------------------------------------------------


def availability() -> Availability:
    """Whether TensorRT can run here and, if not, why."""
    try:
        installed = importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):
        installed = False
    if not installed:
        return Availability(False, MISSING_PACKAGE)
    try:
        import tensorrt  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except (ImportError, OSError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return Availability(False, f"the tensorrt package cannot be imported ({first_line}); reinstall it")
    gpu = cuda_availability()
    if not gpu.ok:
        return Availability(False, f"TensorRT needs a CUDA GPU: {gpu.reason}")
    return Availability(True)


@dataclass(frozen=True)
class TensorRtOptions:
    """The parsed options of the tensorrt backend.

    `timing_cache` is ``"default"``, ``"off"`` or a file path.
    """

    device: int = 0
    lock_clocks_mhz: int | None = None
    timing_cache: str = "default"
    engine_cache: bool = True


def parse_tensorrt_options(settings: Settings) -> TensorRtOptions:
    """Check `settings` for the tensorrt backend; raise `DeviceOptionError` naming the bad one."""
    # int8 is TensorRT's alone among the GPU backends (the cuda backend runs fp32 and fp16): checked by the device
    shared = dataclasses.replace(settings, precision="fp32") if settings.precision == "int8" else settings
    check_gpu_settings("tensorrt", shared, ("device", "lock_clocks", "timing_cache", "engine_cache"))
    options = settings.options
    timing_cache = str(options.get("timing_cache", "default")).strip() or "default"
    if timing_cache.lower() in ("default", "off"):
        timing_cache = timing_cache.lower()
    return TensorRtOptions(
        device=parse_device_index("tensorrt", options),
        lock_clocks_mhz=parse_mhz("tensorrt", options.get("lock_clocks")),
        timing_cache=timing_cache,
        engine_cache=parse_flag("tensorrt", "engine_cache", options.get("engine_cache", "true")),
    )


def default_timing_cache_path(gpu_name: str, tensorrt_version: str, cache_dir: Path) -> Path:
    """``<cache_dir>/tensorrt/timing-<gpu>-<version>.cache``: timings hold for one GPU model and TensorRT build."""
    return Path(cache_dir) / "tensorrt" / f"timing-{_file_safe(gpu_name)}-{_file_safe(tensorrt_version)}.cache"


def engine_key(onnx_graph: bytes, build: Mapping[str, Any]) -> str:
    """The engine cache key: the ONNX graph's bytes and every build setting.

    The cached graphs name their external weight files by a fingerprint of the
    weights, so the graph's bytes change whenever the weights do.
    """
    identity = {"onnx": hashlib.sha256(onnx_graph).hexdigest(), **build}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def _file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unknown"


# -- TensorRT plumbing ------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _logger() -> Any:
    """One logger for the process (older TensorRT treats it as a singleton).

    It keeps the last errors for the exception messages instead of printing:
    the library never prints.
    """
    import tensorrt as trt  # type: ignore[import-not-found, unused-ignore]

    class _ErrorLog(trt.ILogger):  # type: ignore[misc, name-defined, unused-ignore]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: collections.deque[str] = collections.deque(maxlen=20)

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                self.errors.append(msg)

    return _ErrorLog()


def _read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


@dataclass
class TrtSubnet(Generic[ItemT]):
    """An item's engine on the GPU with its execution context, bound buffers and stream."""

    item: ItemT
    engine: Any
    context: Any
    stream: torch.cuda.Stream
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)

    def close(self) -> None:
        # The context must go before the engine it was created from.
        self.context = None
        self.engine = None
        self.buffers = {}


class TensorRtDevice(Generic[ItemT]):
    """Times items (subnets or layers) as TensorRT engines on an NVIDIA GPU (see the module docstring).

    Attributes:
        builds: engines built by this device.
        timing_cache_reuses: builds that started from a saved timing cache.
        engine_cache_hits: engines loaded from the engine cache instead of built.
    """

    name = "tensorrt"
    deterministic = False

    def __init__(self, settings: Settings, source: ModelSource[ItemT]) -> None:
        import tensorrt as trt  # type: ignore[import-not-found, unused-ignore]
        import torch

        self.options = parse_tensorrt_options(settings)
        require_cuda(self.name)
        self.settings = settings
        self.source = source
        self.quantization: Quantization | None = None
        if settings.precision == "int8":
            self.quantization = tensorrt_recipe(int8_quantization(source, settings, self.name))
            self._int8: Int8Source[ItemT] = source  # type: ignore[assignment]  # int8_quantization checked it
        self.device = check_device_index(self.name, self.options.device)
        self._trt = trt
        self._log = _logger()
        self._runtime: Any = None
        props = torch.cuda.get_device_properties(self.options.device)
        self._build_identity = {
            "builder": BUILDER_VERSION,
            "tensorrt": trt.__version__,
            "gpu": props.name,
            "compute_capability": f"{props.major}.{props.minor}",
            "precision": settings.precision,
            "batch": settings.batch,
        }
        if self.quantization is not None:
            self._build_identity["quantization"] = self.quantization.describe()
        self.timing_cache_path = self._timing_cache_path(props.name)
        cache = settings.cache_dir
        self.engine_folder = Path(cache) / "tensorrt" / "engines" if self.options.engine_cache and cache else None
        self.builds = 0
        self.timing_cache_reuses = 0
        self.engine_cache_hits = 0
        self._gpu = nvml_gpu(self.options.device)
        self._clocks = ClockLock(self._gpu, self.options.lock_clocks_mhz)
        self._meters: Meters | None = None

    @property
    def clock_note(self) -> str:
        """Why a requested clock lock was refused ("" when locked or not asked)."""
        return self._clocks.note

    def fingerprint(self) -> dict[str, Any]:
        return gpu_fingerprint(self.options.device) | {
            "backend": self.name,
            "tensorrt": self._trt.__version__,
            "builder": BUILDER_VERSION,
            "batch": self.settings.batch,
            "precision": self.settings.precision,
            "sm_clock_locked_mhz": self._clocks.locked_mhz,
        } | ({"quantization": self.quantization.describe()} if self.quantization is not None else {})

    def conditions(self) -> dict[str, Any]:
        return gpu_readings(self._gpu)

    def meters(self) -> Meters:
        """NVML's energy counter (per timed run: one batch). Memory is absent: TensorRT allocates an engine's
        weights and activations itself, outside the CUDA allocator whose peak the cuda backend reads."""
        if self._meters is None:
            energy, why = energy_counter(self._gpu)
            absent = {MEMORY: "TensorRT allocates its engines outside PyTorch's CUDA allocator, whose peak compofa "
                              "reads: the tensorrt device reads no memory"}
            self._meters = Meters(None, energy, absent | ({ENERGY: why} if why else {}))
        return self._meters

    def prepare(self, item: ItemT) -> TrtSubnet[ItemT]:
        import torch

        batch = self.settings.batch
        onnx_path = (self._int8.int8_onnx(item, batch, self.quantization) if self.quantization is not None
                     else self.source.onnx(item, batch))
        with torch.cuda.device(self.device):
            engine = self._load_engine(onnx_path)
            context = engine.create_execution_context()
            if context is None:
                raise TensorRtError(f"TensorRT could not create a context for {item}: {self._last_error()}")
            handle = TrtSubnet(item, engine, context, torch.cuda.Stream(self.device))
            handle.buffers = self._bind(engine, context)
            # The buffers were filled on the current stream; the engine runs on its own.
            handle.stream.wait_stream(torch.cuda.current_stream(self.device))
            self._enqueue(handle)  # the first run does lazy set-up; keep it out of the timed runs
            handle.stream.synchronize()
        return handle

    def time(self, handle: TrtSubnet[ItemT], n: int) -> list[float]:
        import torch

        if handle.context is None:
            raise ValueError(f"{handle.item} was closed; prepare it again")
        with torch.cuda.device(self.device):
            return time_runs(lambda: self._enqueue(handle), handle.stream, n)

    def close(self) -> None:
        """Give locked clocks back to the driver."""
        self._clocks.release()

    def __enter__(self) -> TensorRtDevice[ItemT]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- engines --

    def _load_engine(self, onnx_path: Path) -> Any:
        """The engine of `onnx_path`: from the engine cache, else built (and cached)."""
        if self._runtime is None:
            self._runtime = self._trt.Runtime(self._log)
        cached = self._engine_file(onnx_path)
        if cached is not None and cached.exists():
            engine = self._runtime.deserialize_cuda_engine(cached.read_bytes())
            if engine is not None:
                self.engine_cache_hits += 1
                return engine
            cached.unlink(missing_ok=True)  # damaged or from another TensorRT: rebuild it
        blob = self._build(onnx_path)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(cached, blob, durable=False)  # a cache: rebuilt if lost
        engine = self._runtime.deserialize_cuda_engine(blob)
        if engine is None:
            raise TensorRtError(f"TensorRT could not load the engine it built from {onnx_path}: {self._last_error()}")
        return engine

    def _engine_file(self, onnx_path: Path) -> Path | None:
        if self.engine_folder is None:
            return None
        return self.engine_folder / f"{engine_key(onnx_path.read_bytes(), self._build_identity)}.engine"

    def _build(self, onnx_path: Path) -> bytes:
        """Parse `onnx_path` and build a serialized engine, using and updating the timing cache."""
        trt = self._trt
        self._log.errors.clear()
        builder = trt.Builder(self._log)
        # TensorRT 10: every network has an explicit batch. A QDQ model is built strongly typed: its tensors keep
        # the ONNX types, and the Q/DQ pairs alone say where int8 runs (no precision flag; see the module docstring)
        typed = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if self.quantization is not None else 0
        network = builder.create_network(typed)
        parser = trt.OnnxParser(network, self._log)
        # From the file, not its bytes: the cached graphs keep their weights in
        # external files that TensorRT finds relative to the graph's path.
        if not parser.parse_from_file(str(onnx_path)):
            detail = parser.get_error(0).desc() if parser.num_errors else self._last_error()
            raise TensorRtError(f"TensorRT could not parse {onnx_path}: {detail}")
        config = builder.create_builder_config()
        if self.settings.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        self._attach_timing_cache(config)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise TensorRtError(f"TensorRT could not build an engine from {onnx_path}: {self._last_error()}")
        self.builds += 1
        self._save_timing_cache(config)
        return bytes(memoryview(serialized))

    def _timing_cache_path(self, gpu_name: str) -> Path | None:
        if self.options.timing_cache == "off":
            return None
        if self.options.timing_cache == "default":
            if self.settings.cache_dir is None:
                return None  # no folder given: nothing is kept
            return default_timing_cache_path(gpu_name, self._trt.__version__, self.settings.cache_dir)
        return Path(self.options.timing_cache).expanduser()

    def _attach_timing_cache(self, config: Any) -> None:
        """Start the build from the saved timing cache, or from an empty one."""
        if self.timing_cache_path is None:
            return
        saved = _read_or_empty(self.timing_cache_path)
        if saved:
            cache = self._timing_cache_from(config, saved)
            if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
                self.timing_cache_reuses += 1
                return
        # No cache yet, or one TensorRT refuses (another version or GPU): start afresh.
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)

    def _save_timing_cache(self, config: Any) -> None:
        """Write the build's timing cache, merged with entries other processes saved meanwhile."""
        path = self.timing_cache_path
        if path is None:
            return
        cache = config.get_timing_cache()
        on_disk = self._timing_cache_from(config, _read_or_empty(path))
        if on_disk is not None:
            cache.combine(on_disk, ignore_mismatch=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, durable=False) as handle:  # a cache: rebuilt if lost
            handle.write(memoryview(cache.serialize()))

    @staticmethod
    def _timing_cache_from(config: Any, data: bytes) -> Any:
        if not data:
            return None
        try:
            return config.create_timing_cache(data)
        except (RuntimeError, TypeError, ValueError):
            return None  # unreadable: treated as no cache

    def _last_error(self) -> str:
        return self._log.errors[-1] if self._log.errors else "TensorRT gave no detail"

    # -- running --

    def _bind(self, engine: Any, context: Any) -> dict[str, torch.Tensor]:
        """One device buffer per input and output, bound by name; inputs hold N(0, 1) values."""
        import torch

        trt = self._trt
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        buffers: dict[str, torch.Tensor] = {}
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            shape = tuple(engine.get_tensor_shape(name))
            dtype = dtypes.get(engine.get_tensor_dtype(name))
            if dtype is None or any(size < 0 for size in shape):
                raise TensorRtError(
                    f"engine tensor {name!r} is {engine.get_tensor_dtype(name)} {shape}; expected a fixed-shape "
                    "float tensor (export the subnet with a fixed batch)"
                )
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                values = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
                tensor = values.to(self.device, dtype)
            else:
                tensor = torch.empty(shape, dtype=dtype, device=self.device)
            if not context.set_tensor_address(name, tensor.data_ptr()):
                raise TensorRtError(f"TensorRT refused the buffer of tensor {name!r}: {self._last_error()}")
            buffers[name] = tensor
        return buffers

    def _enqueue(self, handle: TrtSubnet[ItemT]) -> None:
        if not handle.context.execute_async_v3(handle.stream.cuda_stream):
            raise TensorRtError(f"TensorRT could not run the engine of {handle.item}: {self._last_error()}")


BACKEND = Backend(
    name="tensorrt",
    summary="TensorRT engines built from the ONNX export (fp32/fp16, int8 from QDQ models, timing and engine caches; "
            "batch 64 by default)",
    availability=availability,
    factory=TensorRtDevice,
    default_batch=DEFAULT_BATCH,
    int8_recipe=tensorrt_recipe,
)
