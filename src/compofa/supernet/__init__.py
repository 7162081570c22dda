"""Elastic supernets (OFA MobileNetV3, ProxylessNAS), subnet extraction,
checkpoints, BatchNorm recalibration and ONNX export."""

from compofa.supernet.bn import recalibrate_batchnorm
from compofa.supernet.checkpoint import load_supernet, save_checkpoint
from compofa.supernet.export import (
    OnnxExporter,
    export_subnet,
    load_or_build_supernet,
    load_subnet,
    write_onnx,
    write_torch,
)
from compofa.supernet.fresh import fresh_supernet
from compofa.supernet.network import Subnet, Supernet

__all__ = [
    "OnnxExporter",
    "Subnet",
    "Supernet",
    "export_subnet",
    "fresh_supernet",
    "load_or_build_supernet",
    "load_subnet",
    "load_supernet",
    "recalibrate_batchnorm",
    "save_checkpoint",
    "write_onnx",
    "write_torch",
]
