"""Accuracy for the report: one accuracy source per space, built once, asked in batches."""

from __future__ import annotations

import numpy as np

from compofa.search.arrays import ArchBatch
from compofa.search.predictor import AccuracySource, accuracy_source


class Scorer:
    """Accuracy of subnets of any space of the report, from the source the CLI form `text` names."""

    def __init__(self, text: str, width: float) -> None:
        self.text, self.width = text, width
        self._sources: dict[str, AccuracySource] = {}

    def source(self, space: str) -> AccuracySource:
        if space not in self._sources:
            self._sources[space] = accuracy_source(self.text, space, self.width)
        return self._sources[space]

    def accuracy(self, batch: ArchBatch) -> np.ndarray:
        return np.asarray(self.source(batch.space).accuracy(batch), dtype=np.float64)

    def describe(self) -> str:
        return self.text
