"""What the profiler's records look like on the wire: plain JSON values, read back exactly.

Floats cross as JSON numbers, which Python writes as the shortest text that
reads back to the same double, so a sample measured on a device is stored on
the host bit for bit as it was timed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from compofa.agent.protocol import ProtocolError
from compofa.profiler import ProfileConfig, ReferenceReading, RoundOutcome, RoundRecord, TimeAccount


def record_to_wire(record: RoundRecord) -> dict[str, Any]:
    return {"round_index": record.round_index, "started_at": record.started_at, "timed_at": record.timed_at,
            "warmup_ms": list(record.warmup_ms), "samples_ms": list(record.samples_ms), "drift": record.drift,
            "prepare_s": record.prepare_s, "conditions": record.conditions, "discarded": record.discarded}


def record_from_wire(value: Any, clock_offset: float = 0.0) -> RoundRecord:
    """A round record sent by `record_to_wire`; `clock_offset` (the device's clock minus the host's) is
    taken off its times, so rounds of several machines line up on the host's clock."""
    try:
        return RoundRecord(
            int(value["round_index"]), float(value["started_at"]) - clock_offset,
            float(value["timed_at"]) - clock_offset, tuple(float(v) for v in value["warmup_ms"]),
            tuple(float(v) for v in value["samples_ms"]), float(value["drift"]), float(value["prepare_s"]),
            dict(value["conditions"]), bool(value["discarded"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ProtocolError(f"a round record from the agent is malformed ({error})") from None


def reading_to_wire(reading: ReferenceReading | None) -> dict[str, Any] | None:
    if reading is None:
        return None
    return {"at": reading.at, "median_ms": reading.median_ms, "samples_ms": list(reading.samples_ms)}


def reading_from_wire(value: Any, clock_offset: float = 0.0) -> ReferenceReading | None:
    if value is None:
        return None
    try:
        return ReferenceReading(float(value["at"]) - clock_offset, float(value["median_ms"]),
                                tuple(float(v) for v in value["samples_ms"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ProtocolError(f"a reference reading from the agent is malformed ({error})") from None


def account_to_wire(account: TimeAccount) -> dict[str, Any]:
    return dataclasses.asdict(account)


def account_from_wire(value: Any) -> TimeAccount:
    try:
        return TimeAccount(float(value["prepare"]), float(value["warmup"]), float(value["timed"]),
                           float(value["reference"]), float(value["total"]), int(value["rounds"]),
                           int(value["samples"]), int(value["discarded"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ProtocolError(f"a time account from the agent is malformed ({error})") from None


def outcome_to_wire(outcome: RoundOutcome) -> dict[str, Any]:
    return {"record": record_to_wire(outcome.record), "reference": reading_to_wire(outcome.reference),
            "account": account_to_wire(outcome.account)}


def outcome_from_wire(value: Any, clock_offset: float = 0.0) -> RoundOutcome:
    if not isinstance(value, dict):
        raise ProtocolError("a round's outcome from the agent is malformed")
    return RoundOutcome(record_from_wire(value.get("record"), clock_offset),
                        reading_from_wire(value.get("reference"), clock_offset),
                        account_from_wire(value.get("account")))


def config_to_wire(config: ProfileConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_wire(value: Any) -> ProfileConfig:
    """The profiler settings a host sent (a `ProfileConfigError` for values that cannot work)."""
    if not isinstance(value, dict):
        raise ProtocolError("a request's config must be an object")
    known = {f.name for f in dataclasses.fields(ProfileConfig)}
    return ProfileConfig(**{name: value[name] for name in known if name in value})
