"""Build a layer lookup table for any device: every distinct layer timed alone.

Each distinct layer of the space (`compofa.jobs.layers`) is exported as a
one-layer ONNX model and measured by the same profiler as whole subnets:
interleaved rounds in fresh sessions, a reference layer timed between blocks
to divide out the machine's drift, until each median's confidence interval is
tight. Rounds and results go into a table store beside the lookup table
(``DIR/layers.db``), so an interrupted build resumes; the lookup table itself
is written in OFA's format, one ``DIR/{R}_lookup_table.yaml`` per resolution,
with ``mean`` holding the drift-corrected median.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compofa.devices import Settings, open_device
from compofa.devices.base import host_details
from compofa.devices.lut import LayerTable, LookupTable, LutEntry, write_lut
from compofa.errors import CompofaError
from compofa.profiler import ProfileConfig, ProfileListener, Profiler, TimeAccount
from compofa.space import get_space
from compofa.jobs.profile import (
    JobSummary,
    RunRecord,
    StoreCommitter,
    check_same_device,
    measure_in_order,
    split_by_entry,
)
from compofa.jobs.layers import Layer, LayerSource, distinct_layers
from compofa.tables.store import EntryKey, LatencyTable, writing

#: The store of a lookup table's measurements, inside its folder.
STORE_NAME = "layers.db"
#: Backends that can time a layer alone: they run what their source hands them (an ONNX file,
#: or a PyTorch module, with its input shape), which `LayerSource` hands them for a layer.
LAYER_DEVICES = ("onnxruntime", "torch", "cuda", "tensorrt")


def layer_config(target_ci: float = 0.01, max_rounds: int = 8, round_seconds: float = 0.2) -> ProfileConfig:
    """Profiler settings for layers: a layer takes from 0.01 to 1 ms, so a round needs more samples
    than a subnet's, and the reference blocks between them more than 2 samples each to tell the
    machine's drift from a single sample's noise."""
    return ProfileConfig(target_ci=target_ci, max_rounds=max_rounds, round_seconds=round_seconds,
                         max_samples=2000, reference_samples=20)


@dataclass(frozen=True)
class LutBuildRequest:
    """Everything `compofa lut build` is asked to do."""

    folder: Path
    device: str
    space: str
    width: float
    resolutions: tuple[int, ...]
    settings: Settings = field(default_factory=Settings)
    config: ProfileConfig = field(default_factory=layer_config)
    cache_dir: Path | None = None


@dataclass
class LutBuildSummary:
    layers: int
    already_done: int
    measured: int
    paths: list[Path]
    times: TimeAccount | None = None
    reasons: Counter = field(default_factory=Counter)  # type: ignore[type-arg]
    remeasured: int = 0  # layers an earlier build left unstable, measured again first
    unstable: int = 0  # layers finished now with stability warnings


def _entry_key(request: LutBuildRequest, layer: Layer) -> EntryKey:
    family = get_space(request.space).family.name
    return EntryKey(f"layers/{family}", request.width, layer.key, layer.resolution, request.settings.batch,
                    request.settings.precision)


def _reference(layers: list[Layer]) -> Layer:
    """A block of middling cost at the highest resolution: timed between every round's blocks."""
    top = max(layer.resolution for layer in layers)
    blocks = [layer for layer in layers if layer.resolution == top and layer.key.startswith("expanded_conv")]
    return blocks[len(blocks) // 2] if blocks else layers[0]


def check_folder(request: LutBuildRequest) -> None:
    """Refuse to resume into, or overwrite, a folder that holds a lookup table of another family or width."""
    family = get_space(request.space).family
    store = request.folder / STORE_NAME
    if store.exists():
        with LatencyTable.open(store) as table:
            held = {(entry.key.space, entry.key.width) for entry in table.entries()}
        others = sorted(held - {(f"layers/{family.name}", request.width)})
        if others:
            space, width = others[0]
            raise CompofaError(
                f"{store} holds measurements of {space.removeprefix('layers/')} width {width:g}, not {family.name} "
                f"width {request.width:g}; build into another folder (-o), or rerun with that space and width to resume"
            )
    elif any(request.folder.glob("*_lookup_table.yaml")):
        try:
            LookupTable.read(request.folder).predictor(family, request.width)
        except CompofaError as error:
            raise CompofaError(f"{request.folder} already holds lookup tables that do not fit: {error}; "
                               "build into another folder (-o)") from None


def _measure_layers(request: LutBuildRequest, table: LatencyTable, device: Any, source: LayerSource,
                    layers: list[Layer], listener: ProfileListener
                    ) -> tuple[LutBuildSummary, dict[Layer, EntryKey], dict[EntryKey, Any]]:
    """Measure the layers the store lacks (and those a noisy machine left unstable, first)."""
    fingerprint = device.fingerprint()
    check_same_device(table, device.name, fingerprint, force=False)
    settings = request.settings
    run_settings = {"batch": settings.batch, "precision": settings.precision, "threads": settings.threads,
                    "options": dict(settings.options), "config": vars(request.config), **host_details()}
    run = RunRecord(table, device.name, fingerprint, run_settings, source.describe(), None)
    keys = {layer: _entry_key(request, layer) for layer in layers}
    noisy, missing = split_by_entry(layers, keys.__getitem__, table, run.known_device)
    todo = noisy + missing
    summary = LutBuildSummary(len(layers), len(layers) - len(todo), 0, [], remeasured=len(noisy))
    if todo:
        device_id = run.known_device
        by_key = {layer.key: layer for layer in layers}
        chosen = _reference(layers)
        stored = table.reference(device_id, keys[chosen]) if device_id is not None else None
        reference = by_key.get(stored[0], chosen) if stored else chosen
        baseline = stored[1] if stored and stored[0] in by_key else None
        job = JobSummary(planned=len(layers), already_done=summary.already_done, device_id=device_id)
        committer = StoreCommitter(table, run, keys, _entry_key(request, reference), job, listener)  # type: ignore[arg-type]
        prior = {layer: table.rounds(device_id, keys[layer]) for layer in todo} if device_id is not None else {}
        times, _ = measure_in_order(Profiler(device, request.config), (noisy, missing), reference, baseline, prior,
                                    committer)
        run.finish()
        summary.measured, summary.times, summary.reasons, summary.unstable = job.measured, times, job.reasons, job.unstable
    device_id = run.known_device
    entries = {e.key: e for e in table.entries(device_id=device_id)} if device_id is not None else {}
    return summary, keys, entries


def build_lut(request: LutBuildRequest, listener: ProfileListener | None = None) -> LutBuildSummary:
    """Measure every distinct layer of the request's space into its folder; rerunning resumes."""
    listener = listener or ProfileListener()
    if request.device not in LAYER_DEVICES:
        raise CompofaError(
            f"compofa lut build times each layer alone, which the {request.device!r} backend cannot do; "
            f"use --device {', '.join(LAYER_DEVICES)}"
        )
    design = get_space(request.space)
    design.family.check_width(request.width)
    layers = distinct_layers(request.space, request.width, request.resolutions)
    check_folder(request)
    store = request.folder / STORE_NAME
    source = LayerSource(design.family, request.width, request.cache_dir)
    device = open_device(request.device, source, request.settings)  # type: ignore[arg-type]
    created_folder = not request.folder.exists()
    with contextlib.closing(device):
        try:  # only once the device is known to work: a refused build leaves nothing behind
            request.folder.mkdir(parents=True, exist_ok=True)
            LatencyTable.check_path(store, writable=True, create=True)
            with writing(store) as table:
                summary, keys, entries = _measure_layers(request, table, device, source, layers, listener)
        except BaseException:
            if created_folder and request.folder.is_dir() and not any(request.folder.iterdir()):
                request.folder.rmdir()
            raise
    unfinished = [layer for layer in layers if keys[layer] not in entries]
    if unfinished:  # the profiler finishes every layer or raises; this guards the table we write
        raise CompofaError(
            f"{len(unfinished)} layers have no finished measurement (e.g. {unfinished[0].key}); "
            "rerun the same command to measure them"
        )
    tables = []
    for resolution in request.resolutions:
        measured = {
            layer.key: LutEntry(entries[keys[layer]].n, entries[keys[layer]].median_ms, entries[keys[layer]].std_ms)
            for layer in layers if layer.resolution == resolution
        }
        tables.append(LayerTable(resolution, measured, origin=f"{request.folder}/{resolution}_lookup_table.yaml"))
    if not tables:
        raise CompofaError("no resolutions to build a lookup table for")
    summary.paths = write_lut(LookupTable(tables, str(request.folder)), request.folder)
    return summary
