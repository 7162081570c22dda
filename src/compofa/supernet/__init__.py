"""Elastic supernets (OFA MobileNetV3, ProxylessNAS), subnet extraction,
checkpoints, BatchNorm recalibration and export."""

from compofa.supernet.network import Subnet, Supernet

__all__ = ["Subnet", "Supernet"]
