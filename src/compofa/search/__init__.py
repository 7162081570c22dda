"""Search against measured latency: subnets as arrays, accuracy and latency sources,
exhaustive and evolutionary search."""
