"""PyTorch on an NVIDIA GPU, timed with CUDA events.

The paper measured its GPU (an RTX 2080 Ti) at batch 64 (CompOFA paper,
section 5), so the command line gives this backend
`DEFAULT_BATCH` (64) unless told otherwise; the library always uses
`Settings.batch`.

Each run is bracketed by two CUDA events on the stream it runs on and its
latency is the GPU time between them, read after synchronizing on the end
event: a wall clock around an asynchronous launch measures only the launch,
which is how the reference code under-reported (docs/architecture.md,
"How a measurement is made"). Clocks, temperature, power and throttle reasons come from
NVML (`compofa.devices.nvml`) as the device's `conditions()`.

Options (``--option key=value``; all values are strings):
    device: CUDA device index (default 0; ``cuda:1`` means the same).
    cuda_graphs: true/false (default false). Capture one forward in a
        `torch.cuda.CUDAGraph` and time its replay, which removes the
        per-kernel launch cost of eager PyTorch.
    lock_clocks: lock the SM clock at this many MHz for the device's
        lifetime (NVML, needs root). Refused locks are not errors: the
        fingerprint says the clocks were not locked and `clock_note` why.
        Clocks are given back to the driver by `close()` (or at exit), which
        also undoes a lock someone set before with ``nvidia-smi -lgc``.

The option parsing (`parse_cuda_options` and its helpers, shared with the
TensorRT backend) is pure, so it is tested without a GPU. torch is imported
when a device is built, never with this module: `availability()` reads what
torch was built for and whether an NVIDIA driver is loaded without importing
it, and building the device checks that CUDA really starts.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import sys
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic

from compofa.devices.base import (
    Availability,
    Backend,
    DeviceOptionError,
    DeviceUnavailableError,
    ItemT,
    ModelSource,
    Settings,
    host_fingerprint,
)
from compofa.devices.gpu_meters import gpu_meters
from compofa.devices.meters import Meters
from compofa.devices.nvml import GpuRef, gpu_identity, gpu_readings, lock_clocks, reset_clocks
from compofa.devices.torch_cpu import MISSING_TORCH

if TYPE_CHECKING:
    import torch

#: The batch of the paper's GPU measurements; the CLI's default for GPU backends.
DEFAULT_BATCH = 64
PRECISIONS = ("fp32", "fp16")
#: Eager forwards run on a side stream before a CUDA graph capture, as the
#: PyTorch CUDA graphs notes require (lazy initialisations must not be captured).
GRAPH_WARMUP_RUNS = 3

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_HIDDEN = "CUDA_VISIBLE_DEVICES hides every GPU; unset it or name a GPU"
_NO_DRIVER = "no NVIDIA driver found; this backend needs an NVIDIA GPU and its driver"


# -- availability ----------------------------------------------------------------------


def availability() -> Availability:
    """Whether PyTorch can run on an NVIDIA GPU here and, if not, why (without importing torch).

    Reads what the installed torch was built for and whether an NVIDIA driver is
    loaded; building the device (`require_cuda`) then checks that CUDA starts.
    """
    build = _torch_build()
    if build is None:
        return Availability(False, MISSING_TORCH)
    version, cuda = build
    if cuda is None:
        return Availability(False, f"torch {version} is built without CUDA; install a CUDA build of torch")
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return Availability(False, _HIDDEN)
    if not _driver_loaded():
        return Availability(False, _NO_DRIVER)
    return Availability(True)


def _torch_build() -> tuple[str, str | None] | None:
    """(torch's version, the CUDA version it was built for or None), or None without torch.

    From the imported module when something imported it already, else from its
    ``version.py``, which torch's build writes as plain assignments.
    """
    module = sys.modules.get("torch")
    if module is not None:
        return str(module.__version__), module.version.cuda
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    version = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    cuda = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    return (version[1] if version else "unknown"), (cuda[1] if cuda else None)


def _driver_loaded() -> bool:
    """Whether an NVIDIA kernel driver is loaded; True where that cannot be told cheaply (not Linux)."""
    if not sys.platform.startswith("linux"):
        return True
    return os.path.exists("/proc/driver/nvidia/version") or bool(glob.glob("/dev/nvidia[0-9]*"))


def require_cuda(backend: str) -> None:
    """Check that CUDA starts (importing torch); else `DeviceUnavailableError` saying why."""
    import torch

    if not torch.cuda.is_available():
        raise DeviceUnavailableError(f"device {backend!r} is not available here: {_why_no_cuda()}")


def _why_no_cuda() -> str:
    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} is built without CUDA; install a CUDA build of torch"
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return _HIDDEN
    try:
        torch.cuda.init()
    except (RuntimeError, AssertionError) as error:
        first_line = (str(error).strip().splitlines() or ["unknown error"])[0]
        if "no nvidia driver" in first_line.lower():
            return _NO_DRIVER
        return f"CUDA cannot start: {first_line}"
    return "no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)"


# -- options (pure) --------------------------------------------------------------------


@dataclass(frozen=True)
class CudaOptions:
    """The parsed options of the cuda backend."""

    device: int = 0
    cuda_graphs: bool = False
    lock_clocks_mhz: int | None = None


def parse_cuda_options(settings: Settings) -> CudaOptions:
    """Check `settings` for the cuda backend; raise `DeviceOptionError` naming the bad one."""
    check_gpu_settings("cuda", settings, ("device", "cuda_graphs", "lock_clocks"))
    options = settings.options
    return CudaOptions(
        device=parse_device_index("cuda", options),
        cuda_graphs=parse_flag("cuda", "cuda_graphs", options.get("cuda_graphs", "false")),
        lock_clocks_mhz=parse_mhz("cuda", options.get("lock_clocks")),
    )


def check_gpu_settings(backend: str, settings: Settings, allowed: tuple[str, ...]) -> None:
    """Refuse unknown options, a precision other than fp32/fp16, and a batch below 1."""
    # "source" is what open_device makes of "cuda:1": the device index.
    unknown = sorted(set(settings.options) - set(allowed) - {"source"})
    if unknown:
        raise DeviceOptionError(
            f"the {backend} device takes the options {', '.join(allowed)}, not {', '.join(unknown)}"
        )
    if settings.precision not in PRECISIONS:
        raise DeviceOptionError(
            f"the {backend} device runs precision {' or '.join(PRECISIONS)}, not {settings.precision!r}"
        )
    if settings.batch < 1:
        raise DeviceOptionError(f"batch must be at least 1, got {settings.batch}")


def parse_device_index(backend: str, options: Mapping[str, Any]) -> int:
    """The CUDA device index from ``device=N`` or a ``{backend}:N`` device name."""
    given = {key: str(options[key]).strip() for key in ("device", "source") if key in options}
    if len(set(given.values())) > 1:
        raise DeviceOptionError(
            f"{backend}:{given['source']} and device={given['device']} name different GPUs; give one of them"
        )
    text = next(iter(given.values()), "0")
    if not text.isdigit():
        raise DeviceOptionError(f"the {backend} device index must be a whole number such as 0, got {text!r}")
    return int(text)


def parse_flag(backend: str, name: str, value: Any) -> bool:
    """A true/false option value (also 1/0, yes/no, on/off)."""
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DeviceOptionError(f"the {backend} option {name} must be true or false, got {value!r}")


def parse_mhz(backend: str, value: Any) -> int | None:
    """A clock in MHz (a positive whole number), or None when not given."""
    if value is None:
        return None
    text = str(value).strip().lower().removesuffix("mhz").strip()
    if not text.isdigit() or int(text) <= 0:
        raise DeviceOptionError(f"the {backend} option lock_clocks takes a clock in MHz such as 1410, got {value!r}")
    return int(text)


# -- the GPU, shared with the TensorRT backend --------------------------------------------


def nvml_gpu(index: int) -> GpuRef:
    """How NVML names CUDA device `index`: by UUID, since the two may number GPUs differently."""
    import torch

    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "") or "")
    if not uuid:
        return index
    return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"


def check_device_index(backend: str, index: int) -> torch.device:
    """The torch device of CUDA index `index`, or an error saying which indices exist."""
    import torch

    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceOptionError(f"the {backend} device {index} does not exist: this machine has GPUs 0..{count - 1}")
    return torch.device("cuda", index)


def gpu_fingerprint(index: int) -> dict[str, Any]:
    """What identifies CUDA device `index` and its software stack."""
    import torch

    props = torch.cuda.get_device_properties(index)
    identity = gpu_identity(nvml_gpu(index))
    return host_fingerprint() | {
        "gpu": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "gpu_memory_mib": props.total_memory // 2**20,
        "driver": identity.get("driver_version"),
        "cuda_driver": identity.get("cuda_driver_version"),
        "cuda_runtime": torch.version.cuda,
        "torch": torch.__version__,
    }


class ClockLock:
    """An SM clock lock held for a device's lifetime, reset on `release` or at exit.

    Attributes:
        locked_mhz: the locked clock, or None when none was asked or it was refused.
        note: why a requested lock was refused ("" otherwise).
    """

    def __init__(self, gpu: GpuRef, mhz: int | None) -> None:
        self.locked_mhz: int | None = None
        self.note = ""
        self._reset: weakref.finalize | None = None
        if mhz is None:
            return
        outcome = lock_clocks(gpu, mhz)
        if outcome:
            self.locked_mhz = mhz
            # A finalizer also runs at interpreter exit: a crashed profile must
            # not leave a shared GPU locked at a low clock.
            self._reset = weakref.finalize(self, reset_clocks, gpu)
        else:
            self.note = outcome.reason

    def release(self) -> None:
        """Give the clocks back to the driver (once; later calls do nothing)."""
        if self._reset is not None:
            self._reset()


def time_runs(run: Callable[[], object], stream: torch.cuda.Stream, n: int) -> list[float]:
    """`n` runs of `run` on `stream`, each timed by CUDA events, in milliseconds.

    Every run is synchronized before the next starts, so each sample is one
    batch's latency and not a share of a pipelined queue.
    """
    import torch

    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(n):
        start.record(stream)
        run()
        end.record(stream)
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return samples


# -- the backend -------------------------------------------------------------------------


@dataclass
class CudaSubnet(Generic[ItemT]):
    """An item (subnet or layer) on the GPU with its input, and the callable one timed run makes."""

    item: ItemT
    run: Callable[[], object] | None
    keep: tuple[Any, ...]  # module, input, graph, static output: alive as long as `run`

    def close(self) -> None:
        self.run = None
        self.keep = ()


class CudaDevice(Generic[ItemT]):
    """Times items (subnets or layers) as PyTorch modules on an NVIDIA GPU (see the module docstring)."""

    name = "cuda"
    deterministic = False

    def __init__(self, settings: Settings, source: ModelSource[ItemT]) -> None:
        import torch

        self.options = parse_cuda_options(settings)
        require_cuda(self.name)
        self.settings = settings
        self.source = source
        self.device = check_device_index(self.name, self.options.device)
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16}[settings.precision]
        self._gpu = nvml_gpu(self.options.device)
        self._clocks = ClockLock(self._gpu, self.options.lock_clocks_mhz)
        self._meters: Meters | None = None

    @property
    def clock_note(self) -> str:
        """Why a requested clock lock was refused ("" when locked or not asked)."""
        return self._clocks.note

    def fingerprint(self) -> dict[str, Any]:
        import torch

        return gpu_fingerprint(self.options.device) | {
            "backend": self.name,
            "cudnn": torch.backends.cudnn.version(),
            # TF32 convolutions change fp32 latency on Ampere and later GPUs.
            "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "cudnn_benchmark": True,
            "batch": self.settings.batch,
            "precision": self.settings.precision,
            "cuda_graphs": self.options.cuda_graphs,
            "sm_clock_locked_mhz": self._clocks.locked_mhz,
        }

    def conditions(self) -> dict[str, Any]:
        return gpu_readings(self._gpu)

    def meters(self) -> Meters:
        """The allocator's peak and NVML's energy counter (per timed run: one batch)."""
        if self._meters is None:
            self._meters = gpu_meters(self.device, self._gpu)
        return self._meters

    def prepare(self, item: ItemT) -> CudaSubnet[ItemT]:
        import torch

        module = self.source.module(item).to(self.device, self.dtype)
        shape = self.source.input_shape(item, self.settings.batch)  # a subnet's image, or a layer's input
        image = torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(self.device, self.dtype)
        # cuDNN autotuning picks the fastest convolution algorithms per input
        # shape on the first forward of that shape; the warm-up forward below
        # runs it here so that no timed run pays for (or varies with) it.
        torch.backends.cudnn.benchmark = True
        with torch.cuda.device(self.device), torch.inference_mode():
            module(image)
            torch.cuda.synchronize(self.device)
            if not self.options.cuda_graphs:
                return CudaSubnet(item, lambda: module(image), (module, image))
            graph, output = _capture(module, image)
        return CudaSubnet(item, graph.replay, (module, image, graph, output))

    def time(self, handle: CudaSubnet[ItemT], n: int) -> list[float]:
        import torch

        run = handle.run
        if run is None:
            raise ValueError(f"{handle.item} was closed; prepare it again")
        with torch.cuda.device(self.device), torch.inference_mode():
            return time_runs(run, torch.cuda.current_stream(self.device), n)

    def close(self) -> None:
        """Give locked clocks back to the driver."""
        self._clocks.release()

    def __enter__(self) -> CudaDevice[ItemT]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _capture(module: torch.nn.Module, image: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """One forward of `module` on `image` captured as a CUDA graph, and its (static) output."""
    import torch

    side = torch.cuda.Stream(device=image.device)
    side.wait_stream(torch.cuda.current_stream(image.device))
    with torch.cuda.stream(side):
        for _ in range(GRAPH_WARMUP_RUNS):
            module(image)
    torch.cuda.current_stream(image.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = module(image)
    torch.cuda.synchronize(image.device)
    return graph, output


BACKEND = Backend(
    name="cuda",
    summary="PyTorch on an NVIDIA GPU, CUDA-event timing (fp32/fp16, optional CUDA graphs; batch 64 by default)",
    availability=availability,
    factory=CudaDevice,
    default_batch=DEFAULT_BATCH,
)
