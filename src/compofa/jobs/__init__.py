"""Workflows that combine devices, the profiler and the store.

Each module is one job a command runs: profile a design space into a table
(`profile`), build a layer lookup table (`lutbuild`, over the layers of
`layers`), check a lookup table against measured subnets (`lutcheck`), and
evaluate subnets' accuracy into a table (`evaluate`). The layers below never
import from here.
"""
