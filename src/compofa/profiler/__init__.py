"""Noise-aware measurement: statistics, interleaved drift-corrected rounds."""

from compofa.profiler.measurement import Estimate, Measurement, RoundRecord, RoundSpread
from compofa.profiler.schedule import (
    COARSE,
    NOISY,
    TIME_BUDGET,
    UNFINISHED,
    ProfileConfig,
    ProfileConfigError,
    ProfileListener,
    Profiler,
    ProfileResult,
    Progress,
    Reference,
    ReferenceReading,
    RoundOutcome,
    RoundRunner,
    TimeAccount,
)
from compofa.profiler.stats import Summary, summarize

__all__ = [
    "COARSE",
    "NOISY",
    "TIME_BUDGET",
    "UNFINISHED",
    "Estimate",
    "Measurement",
    "ProfileConfig",
    "ProfileConfigError",
    "ProfileListener",
    "ProfileResult",
    "Profiler",
    "Progress",
    "Reference",
    "ReferenceReading",
    "RoundOutcome",
    "RoundRecord",
    "RoundRunner",
    "RoundSpread",
    "Summary",
    "TimeAccount",
    "summarize",
]
