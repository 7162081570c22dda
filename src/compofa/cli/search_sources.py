"""`compofa search`'s latency sources, read before anything is searched: what each table holds, and whether
the sources of one search agree on the space and width they describe."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from compofa.cli.common import OptionError
from compofa.space import get_space

if TYPE_CHECKING:
    from compofa.tables import Entry


@dataclass(frozen=True)
class SourcePlan:
    """One ``--latency`` value: its kind (table, device, lut, flops), what follows the colon, the batch its
    latency is read at unless ``--batch`` says, the resolutions a table holds, and its device id."""

    text: str
    kind: str
    rest: str
    default_batch: int = 1
    resolutions: tuple[int, ...] = ()
    device_id: int | None = None
    #: The precision a table holds its entries of the space at, when only one ("" otherwise).
    precision: str = ""


def plan_sources(texts: Sequence[str], space: str, width: float, device_ids: Sequence[int]) -> list[SourcePlan]:
    """Every source of a search, with its tables read; refuses tables that disagree on the space or width."""
    from compofa.remote.names import default_batch

    measured = [i for i, text in enumerate(texts) if text.partition(":")[0] in ("table", "device")]
    ids = _device_ids(device_ids, len(measured))
    _check_agreement([text for text in texts if text.startswith("table:") and text != "table:"], space, width)
    plans = []
    for index, text in enumerate(texts):
        kind, _, rest = text.partition(":")
        device_id = ids[measured.index(index)] if index in measured else None
        if kind == "table" and rest:
            resolutions, batches, precisions = _table_setup(rest, space)
            plans.append(SourcePlan(text, kind, rest, batches[0] if len(batches) == 1 else 1, resolutions, device_id,
                                    precisions[0] if len(precisions) == 1 else ""))
        else:
            batch = default_batch(rest) if kind == "device" and rest else 1
            plans.append(SourcePlan(text, kind, rest, batch, (), device_id))
    return plans


def _device_ids(given: Sequence[int], measured: int) -> list[int | None]:
    if not given:
        return [None] * measured
    if len(given) == 1:
        return [given[0]] * measured
    if len(given) != measured:
        raise OptionError(f"--device-id is given {len(given)} times for {measured} table or device sources: give it "
                          "once, or once per such source in --latency order")
    return list(given)


def _subnet_entries(path: str) -> list[Entry]:
    from compofa.tables import SUBNET, LatencyTable

    with LatencyTable.open(path) as table:
        return table.entries(kind=SUBNET)


def _table_setup(path: str, space: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[str, ...]]:
    """The resolutions, batch sizes and precisions a table holds entries of `space` at."""
    entries = _subnet_entries(path)
    keys = [e.key for e in entries if e.key.space == space]
    if not keys:
        raise OptionError(f"table {path} has no {space} entries{_held(entries)}; {_how_to_measure(space, path)}")
    return (tuple(sorted({k.resolution for k in keys})), tuple(sorted({k.batch for k in keys})),
            tuple(sorted({k.precision for k in keys})))


def _held(entries: list[Entry]) -> str:
    spaces = sorted({e.key.space for e in entries})
    return f" (it holds {', '.join(spaces)}: search those with --space {spaces[0]})" if spaces else ""


def _how_to_measure(space: str, path: str) -> str:
    if get_space(space).enumerable:
        return f"profile them with `compofa profile --space {space} --table {path}`"
    return (f"{space} is too large to profile whole: measure its subnets on demand with --latency device:NAME "
            f"--table {path}")


def _check_agreement(tables: list[str], space: str, width: float) -> None:
    """Tables that describe the same space at the same width, or one line naming one that does and one that
    does not (a table of one width alone is refused by its source, naming the width it holds)."""
    if len(tables) < 2:
        return
    held = {text: {(e.key.space, e.key.width) for e in _subnet_entries(text.removeprefix("table:"))} for text in tables}
    having = [text for text, setups in held.items() if (space, width) in setups]
    lacking = [text for text, setups in held.items() if (space, width) not in setups]
    if having and lacking:
        other = ", ".join(f"{s} at width {w:g}" for s, w in sorted(held[lacking[0]])) or "no subnet entries"
        raise OptionError(f"{having[0]} holds {space} at width {width:g} but {lacking[0]} holds {other}: the sources "
                          "of one search must describe one space and width; profile the same one on every device",
                          option=("latency", "width"))
