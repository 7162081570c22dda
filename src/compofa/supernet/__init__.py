"""Elastic supernets (OFA MobileNetV3, ProxylessNAS), subnet extraction,
checkpoints, BatchNorm recalibration and the PyTorch export routes (needs torch).

Graphs without torch, seeded weights and the export cache live in `compofa.graphs`.
"""

from compofa.supernet.bn import recalibrate_batchnorm
from compofa.supernet.checkpoint import load_supernet, save_checkpoint
from compofa.supernet.export import (
    SupernetWeights,
    export_subnet,
    load_or_build_supernet,
    load_subnet,
    write_onnx,
    write_torch,
)
from compofa.supernet.fresh import fresh_supernet, seeded_subnet, subnet_with_weights
from compofa.supernet.network import Subnet, Supernet

__all__ = [
    "Subnet",
    "Supernet",
    "SupernetWeights",
    "export_subnet",
    "fresh_supernet",
    "load_or_build_supernet",
    "load_subnet",
    "load_supernet",
    "recalibrate_batchnorm",
    "save_checkpoint",
    "seeded_subnet",
    "subnet_with_weights",
    "write_onnx",
    "write_torch",
]
