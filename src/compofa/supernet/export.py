"""Export subnets of a PyTorch supernet to ONNX or PyTorch files.

Two routes produce the same network: ``graph`` writes the ONNX graph straight
from the subnet's plan and the supernet's weights (`compofa.graphs`,
milliseconds; the default), ``torch`` traces the PyTorch subnet with
`torch.onnx.export` (about half a second, kept as an independent cross-check).
`SupernetWeights` hands a supernet's weights to the graph writer and to the
content-addressed export cache (`compofa.graphs.cache.OnnxExporter`).
Without a checkpoint the weights are seeded (`compofa.graphs.seeded`), the
same on every route.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from compofa.errors import ExportError
from compofa.fileio import atomic_output, check_output_path
from compofa.graphs.cache import export_metadata, write_graph
from compofa.graphs.interface import INPUT_NAME, METHODS, OPSET, OUTPUT_NAME, check_export_target
from compofa.graphs.onnx_graph import StateDictWeights, Weights
from compofa.graphs.seeded import SeededWeights
from compofa.space import SubnetSpec, format_spec, get_space
from compofa.space.plan import NetworkPlan
from compofa.supernet.fresh import subnet_with_weights
from compofa.supernet.network import Subnet, Supernet


def weights_fingerprint(supernet: Supernet) -> str:
    """A hash of the supernet's settings and every weight's bytes."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(supernet).encode())
    for name, tensor in supernet.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class SupernetWeights:
    """A supernet's weights as graphs are written from them (`compofa.graphs.cache.NetworkWeights`).

    The fingerprint is computed once: do not change the weights while this is in use.
    """

    def __init__(self, supernet: Supernet, fingerprint: str | None = None) -> None:
        self.supernet = supernet
        self.fingerprint = fingerprint or weights_fingerprint(supernet)

    def plan(self, spec: SubnetSpec) -> NetworkPlan:
        return self.supernet.plan(spec)

    def subnet_weights(self, spec: SubnetSpec) -> Weights:
        """`spec`'s weights read from views into the supernet's tensors (nothing copied but what folding makes)."""
        state = self.supernet.subnet_state_dict(spec, copy=False)
        arrays = {name: tensor.detach().cpu().numpy() for name, tensor in state.items()}
        return StateDictWeights(arrays, self.supernet.family.bn_eps)

    def metadata(self) -> dict[str, str]:
        return {
            "compofa.width": f"{self.supernet.width:g}",
            "compofa.kernel_transform": str(self.supernet.kernel_transform).lower(),
            "compofa.weights": self.fingerprint,
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
    if method not in METHODS:
        raise ExportError(f"unknown export method {method!r}; choose one of {', '.join(METHODS)}")
    weights = SupernetWeights(supernet, fingerprint)
    if method == "graph":
        return write_graph(weights, spec, path, batch, durable, locate)
    return write_traced(supernet.subnet(spec), path, batch, export_metadata(weights, spec), durable)


def write_traced(
    subnet: Subnet, path: str | os.PathLike[str], batch: int, metadata: dict[str, str], durable: bool = True
) -> Path:
    """Write `subnet` to `path` as ONNX through `torch.onnx.export` (atomically)."""
    if batch < 1:
        raise ExportError(f"batch must be at least 1, got {batch}")
    target = check_output_path(path)
    data = _trace_to_onnx(subnet.eval(), batch, metadata)
    with atomic_output(target, durable=durable) as handle:
        handle.write(data)
    return target


def _trace_to_onnx(subnet: Subnet, batch: int, metadata: dict[str, str]) -> bytes:
    import onnx

    resolution = subnet.spec.resolution
    example = torch.zeros(batch, 3, resolution, resolution)
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        traced = Path(folder) / "traced.onnx"
        torch.onnx.export(
            subnet,
            (example,),
            traced,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            dynamo=False,
        )
        model = onnx.load(traced)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


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
    Without `checkpoint` the weights are seeded (`compofa.graphs.seeded`), the
    same whatever the route or file type.
    """
    suffix = check_export_target(output, method)
    design = get_space(spec.space)
    transform = design.kernel_transform if kernel_transform is None else kernel_transform
    if checkpoint is not None:
        supernet = load_or_build_supernet(spec.space, width, checkpoint, kernel_transform)
        if suffix == ".onnx":
            return write_onnx(supernet, spec, output, batch, method)
        return write_torch(supernet, spec, output)
    seeded = SeededWeights(design.family, design.family.default_width if width is None else width)
    if suffix == ".onnx" and method == "graph":
        return write_graph(seeded, spec, output, batch)
    subnet = subnet_with_weights(spec, seeded.width, seeded.subnet_weights(spec))
    if suffix == ".onnx":
        return write_traced(subnet, output, batch, export_metadata(seeded, spec))
    return write_subnet_file(subnet, transform, output)


#: Standalone PyTorch subnet files.
#: 1: {"format", "version", "spec", "width", "kernel_transform", "state_dict"}.
SUBNET_FORMAT = "compofa-subnet"
SUBNET_VERSION = 1


def write_torch(supernet: Supernet, spec: SubnetSpec, path: str | os.PathLike[str]) -> Path:
    """Write subnet `spec` of `supernet` as a PyTorch file that `load_subnet` rebuilds (atomic)."""
    check_output_path(path)
    state = supernet.subnet_state_dict(spec)
    return _write_subnet_content(spec, supernet.width, supernet.kernel_transform, state, path)


def write_subnet_file(subnet: Subnet, kernel_transform: bool, path: str | os.PathLike[str]) -> Path:
    """Write the standalone `subnet` as a PyTorch file that `load_subnet` rebuilds (atomic)."""
    return _write_subnet_content(subnet.spec, subnet.width, kernel_transform, subnet.state_dict(), path)


def _write_subnet_content(
    spec: SubnetSpec, width: float, kernel_transform: bool, state: dict[str, torch.Tensor],
    path: str | os.PathLike[str],
) -> Path:
    target = check_output_path(path)
    content = {
        "format": SUBNET_FORMAT,
        "version": SUBNET_VERSION,
        "spec": format_spec(spec),
        "width": width,
        "kernel_transform": kernel_transform,
        "state_dict": state,
    }
    with atomic_output(target) as handle:
        torch.save(content, handle)
    return target


def load_subnet(path: str | os.PathLike[str]) -> Subnet:
    """The `Subnet` module saved by `write_torch` (or ``compofa export -o model.pt``), in eval mode."""
    from compofa.space import parse_spec

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
