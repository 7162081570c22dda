"""Write subnets' LiteRT (``.tflite``) models, and keep them in a content-addressed cache so each is written once.

As for ONNX (`compofa.graphs.cache`), a cached file's name is a hash of
everything that decides its bytes (the writer's version, the weights'
fingerprint, the spec and the batch), so nothing is written twice and a stale
file is never returned. A ``.tflite`` file holds its weights inline (a phone
gets one self-contained file), so the cache keeps one complete file per subnet.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from compofa.errors import ExportError
from compofa.fileio import atomic_output, check_output_path, default_cache_dir
from compofa.graphs.cache import NetworkWeights, export_metadata
from compofa.graphs.tflite_graph import TFLITE_WRITER_VERSION, build_tflite_model
from compofa.space import SubnetSpec, format_spec

#: The suffix of LiteRT model files.
TFLITE_SUFFIX = ".tflite"


def write_tflite(
    weights: NetworkWeights,
    spec: SubnetSpec,
    path: str | os.PathLike[str],
    batch: int = 1,
    durable: bool = True,
) -> Path:
    """Write subnet `spec` with `weights` to `path` as a LiteRT model (atomically); returns the path.

    Input ``input`` is ``[batch, R, R, 3]`` float32 NHWC with R the spec's
    resolution; output ``logits``. The file's metadata says the spec and the weights.
    """
    if batch < 1:
        raise ExportError(f"batch must be at least 1, got {batch}")
    target = check_output_path(path)
    model = build_tflite_model(weights.plan(spec), weights.subnet_weights(spec), batch, export_metadata(weights, spec))
    with atomic_output(target, durable=durable) as handle:
        handle.write(model)
    return target


class TfliteExporter:
    """Writes subnets' LiteRT models with one set of weights into a content-addressed cache.

    The weights' fingerprint is read once, at construction: do not change the
    weights while the exporter is in use (make a new exporter after training).

    Attributes:
        hits, misses: cache lookups answered from disk / written.
    """

    def __init__(
        self,
        weights: NetworkWeights,
        batch: int = 1,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if batch < 1:
            raise ExportError(f"batch must be at least 1, got {batch}")
        self.weights = weights
        self.batch = batch
        self.folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "tflite"
        self.fingerprint = weights.fingerprint
        self.hits = 0
        self.misses = 0
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ExportError(f"cannot create the export cache {str(self.folder)!r}: {error.strerror}") from None

    def key(self, spec: SubnetSpec) -> str:
        identity = {
            "writer": TFLITE_WRITER_VERSION,
            "weights": self.fingerprint,
            "spec": format_spec(spec),
            "batch": self.batch,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]

    def path(self, spec: SubnetSpec) -> Path:
        """The LiteRT model of `spec`, written now unless already cached."""
        target = self.folder / f"{self.key(spec)}{TFLITE_SUFFIX}"
        if target.exists():
            self.hits += 1
            return target
        # A cache file can be rebuilt, so it skips the fsync; the rename stays atomic.
        write_tflite(self.weights, spec, target, self.batch, durable=False)
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
