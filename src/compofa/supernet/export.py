"""Export subnets to ONNX, each at most once.

Two routes produce the same network: ``graph`` writes the ONNX graph straight
from the subnet's plan and weights (milliseconds; the default), ``torch``
traces the PyTorch subnet with `torch.onnx.export` (about half a second, kept
as an independent cross-check). `OnnxExporter` adds a content-addressed cache:
a file's name is a hash of everything that determines its bytes (weights,
spec, batch, route and exporter version), so nothing is exported twice and a
stale file can never be returned.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from compofa import __version__
from compofa.errors import ExportError
from compofa.fileio import atomic_output, check_output_path
from compofa.space import SubnetSpec, format_spec
from compofa.supernet.network import Supernet
from compofa.supernet.onnx_graph import INPUT_NAME, OPSET, OUTPUT_NAME, build_onnx_model

#: Bump whenever either route's output for the same inputs changes.
#: 2: cached models keep their weights in shared external files.
#: 3: graphs are written layer by layer (node names of the head changed).
EXPORTER_VERSION = 3
METHODS = ("graph", "torch")


def weights_fingerprint(supernet: Supernet) -> str:
    """A hash of the supernet's settings and every weight's bytes."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(supernet).encode())
    for name, tensor in supernet.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _metadata(supernet: Supernet, spec: SubnetSpec, fingerprint: str) -> dict[str, str]:
    return {
        "compofa.version": __version__,
        "compofa.spec": format_spec(spec),
        "compofa.width": f"{supernet.width:g}",
        "compofa.kernel_transform": str(supernet.kernel_transform).lower(),
        "compofa.weights": fingerprint,
    }


def write_onnx(
    supernet: Supernet,
    spec: SubnetSpec,
    path: str | os.PathLike[str],
    batch: int = 1,
    method: str = "graph",
    fingerprint: str | None = None,
    durable: bool = True,
    locate: Callable[[str, np.ndarray], str] | None = None,
) -> Path:
    """Write subnet `spec` of `supernet` to `path` as ONNX (atomically).

    Input ``input`` is ``[batch, 3, R, R]`` float32 NCHW with R the spec's
    resolution; output ``logits``. The supernet should be in eval mode (its
    BatchNorm statistics are folded into the convs either way). With `locate`
    (graph route only) large weights go to external files (see `OnnxGraph.write`);
    without, the file is self-contained.
    """
    if batch < 1:
        raise ExportError(f"batch must be at least 1, got {batch}")
    if method not in METHODS:
        raise ExportError(f"unknown export method {method!r}; choose one of {', '.join(METHODS)}")
    target = check_output_path(path)
    fingerprint = fingerprint or weights_fingerprint(supernet)
    metadata = _metadata(supernet, spec, fingerprint)
    if method == "graph":
        graph = build_onnx_model(supernet.plan(spec), supernet.subnet_state_dict(spec, copy=False), batch, metadata)
        with atomic_output(target, durable=durable) as handle:
            graph.write(handle, locate)
    else:
        data = _trace_to_onnx(supernet, spec, batch, metadata)
        with atomic_output(target, durable=durable) as handle:
            handle.write(data)
    return target


def _trace_to_onnx(supernet: Supernet, spec: SubnetSpec, batch: int, metadata: dict[str, str]) -> bytes:
    import onnx

    subnet = supernet.subnet(spec).eval()
    example = torch.zeros(batch, 3, spec.resolution, spec.resolution)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            subnet,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def default_cache_dir() -> Path:
    """``$COMPOFA_CACHE_DIR``, else ``$XDG_CACHE_HOME/compofa``, else ``~/.cache/compofa``."""
    if os.environ.get("COMPOFA_CACHE_DIR"):
        return Path(os.environ["COMPOFA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "compofa"


class SharedWeights:
    """The weight files shared by the cached graphs of one supernet.

    Graph initializers are named by what determines their values (see
    `onnx_graph`), so one file per name serves every subnet, resolution and
    batch that uses that layer: the 243 CompOFA graphs share a few hundred
    files instead of holding 7 GB of copies.
    """

    def __init__(self, models_folder: Path, fingerprint: str) -> None:
        self.relative = Path("weights") / fingerprint
        self.folder = models_folder / self.relative
        self.folder.mkdir(parents=True, exist_ok=True)
        self._known: set[str] = set()
        self.written = 0

    def __call__(self, name: str, array: np.ndarray) -> str:
        """Save `array` as `name` unless already there; its path relative to the models."""
        file_name = f"{name}.bin"
        if name not in self._known:
            path = self.folder / file_name
            # A size check catches a file emptied by a power loss (cache writes skip fsync).
            if not path.exists() or path.stat().st_size != array.nbytes:
                with atomic_output(path, durable=False) as handle:
                    handle.write(memoryview(np.ascontiguousarray(array)).cast("B"))
                self.written += 1
            self._known.add(name)
        return (self.relative / file_name).as_posix()


class OnnxExporter:
    """Exports subnets of one supernet into a content-addressed cache.

    The supernet's weights are hashed once, at construction: do not change
    them while the exporter is in use (make a new exporter after training).
    Graph-route files keep their large weights in `SharedWeights` beside them,
    so a cached file is not self-contained: copy it with `write_onnx` instead.

    Attributes:
        hits, misses: cache lookups answered from disk / exported.
    """

    def __init__(
        self,
        supernet: Supernet,
        batch: int = 1,
        cache_dir: str | os.PathLike[str] | None = None,
        method: str = "graph",
    ) -> None:
        if method not in METHODS:
            raise ExportError(f"unknown export method {method!r}; choose one of {', '.join(METHODS)}")
        self.supernet = supernet
        self.batch = batch
        self.method = method
        self.folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "onnx"
        self.fingerprint = weights_fingerprint(supernet)
        self.hits = 0
        self.misses = 0
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.shared = SharedWeights(self.folder, self.fingerprint) if method == "graph" else None
        except OSError as error:
            raise ExportError(f"cannot create the export cache {str(self.folder)!r}: {error.strerror}") from None

    def key(self, spec: SubnetSpec) -> str:
        identity = {
            "exporter": EXPORTER_VERSION,
            "opset": OPSET,
            "method": self.method,
            "weights": self.fingerprint,
            "spec": format_spec(spec),
            "batch": self.batch,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]

    def path(self, spec: SubnetSpec) -> Path:
        """The ONNX file of `spec`, exported now unless already cached."""
        target = self.folder / f"{self.key(spec)}.onnx"
        if target.exists():
            self.hits += 1
            return target
        # A cache file can be rebuilt, so it skips the fsync; the rename stays atomic.
        write_onnx(self.supernet, spec, target, self.batch, self.method, self.fingerprint, False, self.shared)
        self.misses += 1
        return target

    def paths(
        self, specs: Iterable[SubnetSpec], on_done: Callable[[SubnetSpec, Path], None] | None = None
    ) -> list[Path]:
        """`path` for each spec, calling `on_done` after each (for progress bars)."""
        done = []
        for spec in specs:
            done.append(self.path(spec))
            if on_done is not None:
                on_done(spec, done[-1])
        return done


def load_or_build_supernet(
    space: str,
    width: float | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    kernel_transform: bool | None = None,
) -> Supernet:
    """The supernet behind `space`: loaded from `checkpoint`, or freshly initialised.

    The kernel transform defaults to the space's family convention (on for
    ``ofa-*``, off for ``compofa*``); our own checkpoints carry their setting.
    Without a checkpoint the weights are random (seeded, with calibrated
    BatchNorm; see `fresh_supernet`): fine for latency, not for accuracy.
    """
    from compofa.space import get_space
    from compofa.supernet.checkpoint import load_supernet
    from compofa.supernet.fresh import fresh_supernet

    design = get_space(space)
    transform = design.kernel_transform if kernel_transform is None else kernel_transform
    if width is not None:
        design.family.check_width(width)
    if checkpoint is None:
        supernet = fresh_supernet(design.family, width, transform)
    else:
        supernet = load_supernet(checkpoint, design.family, width, transform, space=space)
    return supernet.eval()


def export_subnet(
    spec: SubnetSpec,
    output: str | os.PathLike[str],
    width: float | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    batch: int = 1,
    kernel_transform: bool | None = None,
    method: str = "graph",
) -> Path:
    """Export one subnet to ONNX (``.onnx``) or PyTorch (``.pt``): what ``compofa export`` does.

    Checks the output path before any work, so a bad path fails at once.
    """
    suffix = Path(output).suffix.lower()
    if suffix not in (".onnx", ".pt", ".pth"):
        raise ExportError(f"export to a .onnx (ONNX) or .pt/.pth (PyTorch) file, not {Path(output).name!r}")
    check_output_path(output)
    supernet = load_or_build_supernet(spec.space, width, checkpoint, kernel_transform)
    if suffix == ".onnx":
        return write_onnx(supernet, spec, output, batch, method)
    return write_torch(supernet, spec, output)


#: Standalone PyTorch subnet files.
#: 1: {"format", "version", "spec", "width", "kernel_transform", "state_dict"}.
SUBNET_FORMAT = "compofa-subnet"
SUBNET_VERSION = 1


def write_torch(supernet: Supernet, spec: SubnetSpec, path: str | os.PathLike[str]) -> Path:
    """Write subnet `spec` as a PyTorch file that `load_subnet` rebuilds (atomic)."""
    target = check_output_path(path)
    content = {
        "format": SUBNET_FORMAT,
        "version": SUBNET_VERSION,
        "spec": format_spec(spec),
        "width": supernet.width,
        "kernel_transform": supernet.kernel_transform,
        "state_dict": supernet.subnet_state_dict(spec),
    }
    with atomic_output(target) as handle:
        torch.save(content, handle)
    return target


def load_subnet(path: str | os.PathLike[str]) -> Subnet:
    """The `Subnet` module saved by `write_torch` (or ``compofa export -o model.pt``), in eval mode."""
    from compofa.space import parse_spec
    from compofa.supernet.network import Subnet

    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ExportError(f"subnet file {str(path)!r} does not exist") from None
    except Exception as error:  # torch raises many kinds for a bad file
        raise ExportError(f"cannot read subnet file {str(path)!r}: {type(error).__name__}") from None
    if not isinstance(content, dict) or content.get("format") != SUBNET_FORMAT:
        raise ExportError(f"{str(path)!r} is not a compofa subnet file (write one with `compofa export -o NAME.pt`)")
    if content.get("version") != SUBNET_VERSION:
        raise ExportError(f"{str(path)!r} is subnet file version {content.get('version')}; this compofa reads 1")
    module = Subnet(parse_spec(content["spec"]), float(content["width"]), device="meta")
    module.load_state_dict(content["state_dict"], assign=True)
    return module.eval()
