"""compofa: profile every subnet of a CompOFA supernet on a device, keep the
measurements as durable latency tables, and search against them.

The subpackages, from the ground up (each imports only those before it):
`space` (specs, design spaces; no torch), `supernet` (elastic networks,
extraction, export).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("compofa")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
