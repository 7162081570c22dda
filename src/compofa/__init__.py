"""compofa: profile every subnet of a CompOFA supernet on a device, keep the
measurements as durable latency tables, and search against them.

The subpackages, from the ground up (each imports only those before it):
`space` (specs, design spaces; no torch), `supernet` (elastic networks,
extraction, export).
"""

# The one place the version is written (pyproject.toml reads it from here). A
# literal rather than importlib.metadata, whose import alone costs every command
# about 60 ms of start-up.
__version__ = "0.1.0"

__all__ = ["__version__"]
