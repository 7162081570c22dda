"""The quantities a search can hold a subnet to, as search, its limits and its results name them."""

from __future__ import annotations

#: What a latency target may hold a source to: the median (the default), or a tail percentile.
LATENCY_METRICS = ("median", "p90", "p99")
#: Quantities other than latency a search may limit (`compofa.search.constraints`), as tables name them.
MEMORY, ENERGY = "memory", "energy"
#: How each quantity is spoken of in messages.
DESCRIBED = {"median": "median latency", "p90": "p90 latency", "p99": "p99 latency", MEMORY: "peak memory",
             ENERGY: "energy per inference"}
