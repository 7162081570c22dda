"""Reading OFA/CompOFA checkpoints and writing our own.

Accepted layouts (docs/architecture.md lists the names): the state_dict of the public OFA code, with the
current ``.conv.`` or the older ``.mobile_inverted_conv.`` module names, the
dynamic layers' inner ``.conv.``/``.bn.``/``.linear.`` level or not, with or
without the kernel-transform matrices, raw or wrapped in ``{"state_dict": ...}``
(and with DataParallel's ``module.`` prefix); and our own files, which carry the
family, width and kernel-transform setting next to the weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch

from compofa.errors import CheckpointError
from compofa.fileio import atomic_output
from compofa.space import Family, get_family, get_space
from compofa.supernet.network import Supernet

#: Our checkpoint format; bump on any incompatible change.
#: 1: {"format", "version", "family", "width", "kernel_transform", "state_dict"}.
CHECKPOINT_FORMAT = "compofa-supernet"
CHECKPOINT_VERSION = 1

_MATRIX_KEY = re.compile(r"\.depth_conv\.conv\.\d+to\d+_matrix$")
# OFA name -> our name, applied in order. The dynamic layers of OFA wrap each
# conv, BatchNorm and linear in one more module level than the static ones.
_RENAMES = (
    (".mobile_inverted_conv.", ".conv."),
    (".conv.conv.weight", ".conv.weight"),
    (".bn.bn.", ".bn."),
    (".linear.linear.", ".linear."),
)
_LIST_LIMIT = 4


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state_dict in a checkpoint file, and its metadata (empty for OFA files)."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(f"checkpoint {str(path)!r} is a directory, not a file") from None
    except Exception as error:  # torch raises many kinds for a bad file
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {_load_failure(error)}") from None
    return unwrap_checkpoint(content, str(path))


def _load_failure(error: Exception) -> str:
    if "Weights only load failed" in str(error):
        # Loading arbitrary pickles could run code, so only tensors are read.
        return "it holds objects other than tensors, or is not a PyTorch checkpoint (is it the right file?)"
    return f"not a PyTorch checkpoint, or a corrupt or truncated one ({type(error).__name__})"


def unwrap_checkpoint(content: Any, source: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    metadata: dict[str, Any] = {}
    if isinstance(content, Mapping) and content.get("format") == CHECKPOINT_FORMAT:
        if content.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(
                f"{source} is compofa checkpoint version {content.get('version')!r}; this compofa reads version "
                f"{CHECKPOINT_VERSION}: upgrade compofa"
            )
        metadata = {key: content[key] for key in ("family", "width", "kernel_transform") if key in content}
        phase = content.get("training", {}).get("phase") if isinstance(content.get("training"), Mapping) else None
        if isinstance(phase, Mapping) and isinstance(phase.get("space"), str):
            metadata["trained_space"] = phase["space"]  # written by `compofa train`
    if isinstance(content, Mapping) and "state_dict" in content:
        content = content["state_dict"]
    if not isinstance(content, Mapping) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise CheckpointError(f"{source} holds no state_dict (expected a mapping of names to tensors)")
    state = {_rename(str(key)): value for key, value in content.items()}
    return state, metadata


def _rename(key: str) -> str:
    if key.startswith("module."):
        key = key[len("module.") :]
    for old, new in _RENAMES:
        key = key.replace(old, new)
    return key


def infer_width(state: Mapping[str, torch.Tensor], family: Family) -> float | None:
    """The width multiplier whose stem matches the checkpoint's, if any."""
    stem = state.get("first_conv.conv.weight")
    if stem is None:
        return None
    for width in family.widths:
        if family.scaled(family.stem_base_width, width) == stem.shape[0]:
            return width
    return None


def load_state(supernet: Supernet, state: Mapping[str, torch.Tensor]) -> None:
    """Copy `state` into `supernet`, or raise listing every key that does not fit."""
    own = supernet.state_dict()
    unexpected = [k for k in state if k not in own and not (_MATRIX_KEY.search(k) and not supernet.kernel_transform)]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    mismatched = [
        f"{k}: checkpoint {list(state[k].shape)} vs supernet {list(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if unexpected or missing or mismatched:
        raise CheckpointError(_describe_misfit(supernet, state, unexpected, missing, mismatched))
    with torch.no_grad():
        for key, tensor in own.items():
            if key in state:
                tensor.copy_(state[key])


def _describe_misfit(
    supernet: Supernet,
    state: Mapping[str, torch.Tensor],
    unexpected: list[str],
    missing: list[str],
    mismatched: list[str],
) -> str:
    parts = []
    for label, keys in (("shape mismatches", mismatched), ("missing keys", missing), ("unknown keys", unexpected)):
        if keys:
            more = f"; ... {len(keys) - _LIST_LIMIT} more" if len(keys) > _LIST_LIMIT else ""
            shown = "; ".join(keys[:_LIST_LIMIT]) + more
            parts.append(f"{len(keys)} {label} ({shown})")
    hint = ""
    width = infer_width(state, supernet.family)
    if mismatched and width is not None and width != supernet.width:
        hint = f"; its stem looks like width {width:g}: pass --width {width:g}"
    elif missing and all(_MATRIX_KEY.search(k) for k in missing):
        hint = "; it has no kernel-transform matrices (trained without the transform): use --no-kernel-transform"
    return f"checkpoint does not fit {supernet!r}: " + ", ".join(parts) + hint


def load_supernet(
    path: str | os.PathLike[str],
    family: Family | str,
    width: float | None = None,
    kernel_transform: bool = False,
    space: str | None = None,
) -> Supernet:
    """Build a supernet of `family` and load the checkpoint at `path` into it.

    The width comes from `width`, else our checkpoint's metadata, else the
    stem's channel count. Our checkpoints also fix the kernel transform; a
    conflicting `width` is an error. A checkpoint written by `compofa train`
    names the space it was trained on: when `space` is given, it must hold no
    subnet that space lacks (its other subnets' weights were never trained).
    """
    family = get_family(family) if isinstance(family, str) else family
    state, metadata = read_checkpoint(path)
    if metadata:
        if metadata.get("family") != family.name:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is of the {metadata.get('family')} family, not {family.name}: "
                "choose a space of that family"
            )
        if width is not None and float(metadata["width"]) != float(width):
            raise CheckpointError(f"checkpoint {str(path)!r} has width {metadata['width']:g}, not {width:g}")
        width, kernel_transform = float(metadata["width"]), bool(metadata["kernel_transform"])
        if space is not None and "trained_space" in metadata:  # after the family check, which names a misfit better
            _check_trained_space(str(path), metadata["trained_space"], space)
    elif width is None:
        width = infer_width(state, family) or family.default_width
    supernet = Supernet(family, width, kernel_transform)
    load_state(supernet, state)
    return supernet


def _check_trained_space(source: str, trained: str, space: str) -> None:
    try:
        trained_design = get_space(trained)
    except KeyError:
        raise CheckpointError(f"checkpoint {source!r} was trained on space {trained!r}, which this compofa does not "
                              "know: upgrade compofa") from None
    missing = get_space(space).missing_from(trained_design)
    if missing is not None:
        raise CheckpointError(f"checkpoint {source!r} was trained on space {trained!r}, whose subnets never use "
                              f"{missing} of space {space!r}: use --space {trained}, or a checkpoint trained on "
                              f"{space!r}")


def save_checkpoint(supernet: Supernet, path: str | os.PathLike[str], extra: Mapping[str, Any] | None = None) -> None:
    """Write `supernet` with its settings; atomic, so an old file stays valid on failure."""
    content: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "family": supernet.family.name,
        "width": supernet.width,
        "kernel_transform": supernet.kernel_transform,
        "state_dict": supernet.state_dict(),
    }
    content |= dict(extra or {})
    with atomic_output(path) as handle:
        torch.save(content, handle)
