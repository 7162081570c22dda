"""Build a layer lookup table for any device: every distinct layer timed alone.

Each distinct layer of the space (`compofa.lut.layers`) is exported as a
one-layer ONNX model (`compofa.sources.layers.LayerSource`) and measured by the
same profiler and job skeleton (`compofa.jobs.measure`) as whole subnets:
interleaved rounds in fresh sessions, a reference layer timed between blocks
to divide out the machine's drift, until each median's confidence interval is
tight. Rounds and results go into a table store beside the lookup table
(``DIR/layers.db``), so an interrupted build resumes; the lookup table itself
is written in OFA's format, one ``DIR/{R}_lookup_table.yaml`` per resolution,
with ``mean`` holding the drift-corrected median. In the store, layer entries are
keyed as layers of their family (`EntryKey.layer`), not as subnets of a space.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compofa.devices import Device, Settings
from compofa.errors import CompofaError
from compofa.jobs.measure import ItemKeys, measure_items, with_cache_dir
from compofa.lut import Layer, LayerTable, LookupTable, LutEntry, distinct_layers, write_lut
from compofa.profiler import ProfileConfig, ProfileListener, TimeAccount
from compofa.remote.names import backend_name, display_name, open_any_device
from compofa.sources.layers import LayerSource
from compofa.space import get_space
from compofa.tables.store import LAYER, Entry, EntryKey, LatencyTable, SetupKey, writing


class LutBuildError(CompofaError):
    """A lookup table that cannot be built as asked: a backend that cannot time layers alone, a folder
    holding another family's or width's table, layers left unmeasured."""


#: The store of a lookup table's measurements, inside its folder.
STORE_NAME = "layers.db"
#: Backends that can time a layer alone: they run what their source hands them (an ONNX file,
#: or a PyTorch module, with its input shape), which `LayerSource` hands them for a layer.
#: Backends that time one layer alone: wherever they run (here, over ssh), and LiteRT on a phone (adb://).
LAYER_DEVICES = ("onnxruntime", "torch", "cuda", "tensorrt", "litert")


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
    reasons: Counter[str] = field(default_factory=Counter)
    remeasured: int = 0  # layers an earlier build left unstable, measured again first
    unstable: int = 0  # layers finished now with stability warnings


def layer_keys(request: LutBuildRequest, layers: list[Layer]) -> ItemKeys[Layer]:
    """How a build's layers are keyed in its store (as layers of the family), and how its reference is named."""
    family = get_space(request.space).family.name
    settings = request.settings
    by_key = {layer.key: layer for layer in layers}

    def entry(layer: Layer) -> EntryKey:
        return EntryKey.layer(family, request.width, layer.key, layer.resolution, settings.batch, settings.precision)

    return ItemKeys(entry, SetupKey(family, request.width, settings.batch, settings.precision, LAYER), by_key.get)


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
            held = {(entry.key.kind, entry.key.space, entry.key.width) for entry in table.entries()}
        others = sorted(held - {(LAYER, family.name, request.width)})
        if others:
            kind, space, width = others[0]
            what = space if kind == LAYER else f"{kind}s of {space}"
            raise LutBuildError(
                f"{store} holds measurements of {what} width {width:g}, not {family.name} width {request.width:g}; "
                "build into another folder (-o), or rerun with that space and width to resume"
            )
    elif any(request.folder.glob("*_lookup_table.yaml")):
        try:
            LookupTable.read(request.folder).predictor(family, request.width)
        except CompofaError as error:
            raise LutBuildError(f"{request.folder} already holds lookup tables that do not fit: {error}; "
                               "build into another folder (-o)") from None


def _measure_layers(request: LutBuildRequest, table: LatencyTable, device: Device[Layer, Any], source: LayerSource,
                    settings: Settings, layers: list[Layer], keys: ItemKeys[Layer], listener: ProfileListener[Layer]
                    ) -> tuple[LutBuildSummary, dict[EntryKey, Entry]]:
    """Measure the layers the store lacks (and those a noisy machine left unstable, first); the summary and
    the device's finished entries."""
    job = measure_items(table, device, layers, keys, lambda: _reference(layers), source.describe(),
                        settings, request.config, listener, remedy="build into another folder (-o)")
    summary = LutBuildSummary(len(layers), job.already_done, job.measured, [], job.times, job.reasons,
                              job.remeasured, job.unstable)
    entries = {e.key: e for e in table.entries(device_id=job.device_id)} if job.device_id is not None else {}
    return summary, entries


def build_lut(request: LutBuildRequest, listener: ProfileListener[Layer] | None = None) -> LutBuildSummary:
    """Measure every distinct layer of the request's space into its folder; rerunning resumes."""
    listener = listener or ProfileListener[Layer]()
    if backend_name(request.device) not in LAYER_DEVICES:
        raise LutBuildError(
            f"compofa lut build times each layer alone, which the {display_name(request.device)!r} backend cannot "
            f"do; use --device {', '.join(LAYER_DEVICES[:-1])} (here or ssh://HOST/BACKEND) or adb://SERIAL/litert"
        )
    design = get_space(request.space)
    design.family.check_width(request.width)
    layers = distinct_layers(request.space, request.width, request.resolutions)
    check_folder(request)
    store = request.folder / STORE_NAME
    keys = layer_keys(request, layers)
    source = LayerSource(design.family, request.width, request.cache_dir)
    settings = with_cache_dir(request.settings, request.cache_dir)
    device = open_any_device(request.device, source, settings)
    created_folder = not request.folder.exists()
    with contextlib.closing(device):
        try:  # only once the device is known to work: a refused build leaves nothing behind
            request.folder.mkdir(parents=True, exist_ok=True)
            LatencyTable.check_path(store, writable=True, create=True)
            with writing(store) as table:
                summary, entries = _measure_layers(request, table, device, source, settings, layers, keys, listener)
        except BaseException:
            if created_folder and request.folder.is_dir() and not any(request.folder.iterdir()):
                request.folder.rmdir()
            raise
    unfinished = [layer for layer in layers if keys.entry(layer) not in entries]
    if unfinished:  # the profiler finishes every layer or raises; this guards the table we write
        raise LutBuildError(
            f"{len(unfinished)} layers have no finished measurement (e.g. {unfinished[0].key}); "
            "rerun the same command to measure them"
        )
    tables = []
    for resolution in request.resolutions:
        measured = {
            layer.key: _lut_entry(entries[keys.entry(layer)])
            for layer in layers if layer.resolution == resolution
        }
        tables.append(LayerTable(resolution, measured, origin=f"{request.folder}/{resolution}_lookup_table.yaml"))
    if not tables:
        raise LutBuildError("no resolutions to build a lookup table for")
    summary.paths = write_lut(LookupTable(tables, str(request.folder)), request.folder)
    return summary


def _lut_entry(entry: Entry) -> LutEntry:
    """A finished layer entry as OFA's format holds it: count, and the drift-corrected median as `mean`."""
    return LutEntry(entry.n, entry.median_ms, entry.std_ms)
