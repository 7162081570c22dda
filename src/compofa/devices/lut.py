"""The `lut` backend: latency estimated from an OFA-format layer lookup table.

Nothing runs. A subnet's latency is the sum of the `mean` entries of its layers
in the table of its input resolution, as `compofa.lut.LutPredictor` computes it
(the same estimate search uses for ``--latency lut:...``).

Device names: ``lut:note10`` (the shipped Samsung Note10 tables of the CompOFA
authors, MobileNetV3 w1.2, batch 1, resolutions 160..224 step 4; see
``compofa/data/NOTICE``) or ``lut:PATH`` (one ``{R}_lookup_table.yaml`` file or
a folder of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from compofa.devices.base import Availability, Backend, DeviceOptionError, ModelSource, Settings, SpaceSource
from compofa.space import SubnetSpec

if TYPE_CHECKING:  # the lut package (numpy, yaml) loads when a table is opened, not when devices are listed
    from compofa.lut import ShippedTable


@dataclass
class LutSubnet:
    """A 'prepared' subnet: its estimate, computed once."""

    item: SubnetSpec
    latency_ms: float

    def close(self) -> None:
        """Nothing to free."""


class LutDevice:
    """Estimates latency from a layer lookup table (option ``source``: ``note10`` or a path).

    The OFA format does not record the batch or precision a table was measured
    at: the shipped tables insist on theirs (batch 1, fp32); for a table of
    your own the settings you give are taken as its and recorded in the
    fingerprint. Only subnets of a design space can be estimated: the source
    must say which space and width (`SpaceSource`); its networks are never built.
    """

    name = "lut"
    deterministic = True

    def __init__(self, settings: Settings, source: ModelSource[Any]) -> None:
        unknown = set(settings.options) - {"source"}
        if unknown:
            raise DeviceOptionError(f"the lut device takes only the option source, not {sorted(unknown)}")
        location = settings.options.get("source")
        if not location:
            raise DeviceOptionError(
                "the lut device needs a table: use lut:note10 (the shipped Samsung Note10 tables) or lut:PATH "
                "(a {R}_lookup_table.yaml file or a folder of them)"
            )
        if not isinstance(source, SpaceSource):
            raise DeviceOptionError(
                f"the lut device estimates subnets of a design space; it cannot time {source.describe()}"
            )
        from compofa.lut import SHIPPED_TABLES, LookupTable

        shipped = SHIPPED_TABLES.get(location)
        if shipped is not None:
            _check_shipped_settings(location, shipped, settings)
        self.settings = settings
        self.source = source
        self.table = LookupTable.open(location)
        self.predictor = self.table.predictor(source.space, source.width)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "table": self.table.name,
            "sha256": self.table.sha256,
            "family": self.predictor.family.name,
            "width": self.predictor.width,
            "resolutions": list(self.table.resolutions),
            "batch": self.settings.batch,
            "precision": self.settings.precision,
        }

    def conditions(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass

    def check_plan(self, items: Sequence[SubnetSpec]) -> None:
        """Refuse a plan with a resolution the table lacks (before anything is written)."""
        missing = sorted({spec.resolution for spec in items} - set(self.table.resolutions))
        if missing:
            from compofa.lut import LutError

            have = ", ".join(map(str, self.table.resolutions))
            raise LutError(f"LUT {self.table.name} has no table for resolution(s) {', '.join(map(str, missing))}; "
                           f"it has {have}: give --resolution from those")

    def prepare(self, spec: SubnetSpec) -> LutSubnet:
        return LutSubnet(spec, self.predictor.predict(spec))

    def time(self, handle: LutSubnet, n: int) -> list[float]:
        return [handle.latency_ms] * n


def _check_shipped_settings(name: str, shipped: ShippedTable, settings: Settings) -> None:
    if settings.batch != shipped.batch or settings.precision != shipped.precision:
        raise DeviceOptionError(
            f"the {name} tables were measured at batch {shipped.batch}, {shipped.precision}; "
            f"got batch {settings.batch}, {settings.precision}"
        )


BACKEND = Backend(
    name="lut",
    summary="estimates from an OFA-format layer lookup table (lut:note10 ships; lut:PATH)",
    availability=lambda: Availability(True),
    factory=LutDevice,
)
