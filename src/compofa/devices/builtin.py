"""Imports every built-in backend module; importing one registers it."""

from compofa.devices import onnx_runtime, torch_cpu  # noqa: F401
