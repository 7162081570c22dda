"""Workflows that combine devices, the profiler and the store.

Each module is one job a command runs: profile a design space into a table
(`profile`), build a layer lookup table (`lutbuild`, over the distinct layers
of `compofa.lut.layers`), check a lookup table against measured subnets
(`lutcheck`), evaluate subnets' accuracy into a table (`evaluate`), and merge
tables, accuracy rows included (`merge`).
`profile` and `lutbuild` share one skeleton, `measure`. The layers below never
import from here.
"""
