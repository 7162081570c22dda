"""Write subnets' ONNX graphs, and keep them in a content-addressed cache so each is written at most once.

A cached file's name is a hash of everything that determines its bytes (the
weights' fingerprint, spec, batch, opset and exporter version), so nothing is
exported twice and a stale file can never be returned. The weights come from a
`NetworkWeights`: `compofa.graphs.seeded.SeededWeights` without a checkpoint
(no torch), or a supernet's (`compofa.supernet.export.SupernetWeights`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from compofa import __version__
from compofa.errors import ExportError
from compofa.fileio import atomic_output, check_output_path, default_cache_dir
from compofa.graphs.onnx_graph import OPSET, Weights, build_onnx_model
from compofa.space import SubnetSpec, format_spec
from compofa.space.plan import NetworkPlan

#: Bump whenever the graph written for the same inputs changes.
#: 2: cached models keep their weights in shared external files.
#: 3: graphs are written layer by layer (node names of the head changed).
#: 4: without a checkpoint the weights are seeded numpy arrays (compofa.graphs.seeded),
#:    no longer a calibrated PyTorch supernet's.
EXPORTER_VERSION = 4


class NetworkWeights(Protocol):
    """The weights of every subnet of one supernet, as graphs are written from them."""

    @property
    def fingerprint(self) -> str:
        """A hash of everything that decides the arrays (the cache key and weight folder use it)."""
        ...

    def plan(self, spec: SubnetSpec) -> NetworkPlan:
        """The plan of `spec` (an error for a spec these weights cannot hold)."""
        ...

    def subnet_weights(self, spec: SubnetSpec) -> Weights:
        """The arrays of `spec`'s parameters."""
        ...

    def metadata(self) -> dict[str, str]:
        """What a graph's metadata says about the weights (``compofa.width``, ``compofa.weights``, ...)."""
        ...


def export_metadata(weights: NetworkWeights, spec: SubnetSpec) -> dict[str, str]:
    """The metadata of `spec`'s exported model: compofa's version, the spec and the weights."""
    return {"compofa.version": __version__, "compofa.spec": format_spec(spec), **weights.metadata()}


def write_graph(
    weights: NetworkWeights,
    spec: SubnetSpec,
    path: str | os.PathLike[str],
    batch: int = 1,
    durable: bool = True,
    locate: Callable[[str, np.ndarray], str] | None = None,
) -> Path:
    """Write subnet `spec` with `weights` to `path` as an ONNX graph (atomically).

    Input ``input`` is ``[batch, 3, R, R]`` float32 NCHW with R the spec's
    resolution; output ``logits``. With `locate` large weights go to external
    files (see `OnnxGraph.write`); without, the file is self-contained.
    """
    if batch < 1:
        raise ExportError(f"batch must be at least 1, got {batch}")
    target = check_output_path(path)
    graph = build_onnx_model(weights.plan(spec), weights.subnet_weights(spec), batch, export_metadata(weights, spec))
    with atomic_output(target, durable=durable) as handle:
        graph.write(handle, locate)
    return target


class SharedWeights:
    """The weight files shared by the cached graphs of one set of weights.

    Graph initializers are named by what determines their values (see
    `compofa.graphs.onnx_graph.Parameter`), so one file per name serves every
    subnet, resolution and batch that uses that layer: the 243 CompOFA graphs
    share a few hundred files instead of holding 7 GB of copies.
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
                    handle.write(np.ascontiguousarray(array).data.cast("B"))
                self.written += 1
            self._known.add(name)
        return (self.relative / file_name).as_posix()


class OnnxExporter:
    """Exports subnets with one set of weights into a content-addressed cache.

    The weights' fingerprint is read once, at construction: do not change the
    weights while the exporter is in use (make a new exporter after training).
    Files keep their large weights in `SharedWeights` beside them, so a cached
    file is not self-contained: copy it with `write_graph` instead.

    Attributes:
        hits, misses: cache lookups answered from disk / exported.
    """

    def __init__(
        self,
        weights: NetworkWeights,
        batch: int = 1,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.weights = weights
        self.batch = batch
        self.folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "onnx"
        self.fingerprint = weights.fingerprint
        self.hits = 0
        self.misses = 0
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.shared = SharedWeights(self.folder, self.fingerprint)
        except OSError as error:
            raise ExportError(f"cannot create the export cache {str(self.folder)!r}: {error.strerror}") from None

    def key(self, spec: SubnetSpec) -> str:
        identity = {
            "exporter": EXPORTER_VERSION,
            "opset": OPSET,
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
        write_graph(self.weights, spec, target, self.batch, durable=False, locate=self.shared)
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
