"""Imports every built-in backend module; importing one registers it.

Each module imports its heavy or optional library (tensorrt, pynvml) only when
a device is built, so this import never fails for a missing one.
"""

from compofa.devices import cuda, lut, onnx_runtime, tensorrt_backend, torch_cpu  # noqa: F401
