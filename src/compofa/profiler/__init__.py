"""Noise-aware measurement: statistics, interleaved drift-corrected rounds."""

from compofa.profiler.measurement import Estimate, Measurement, RoundRecord, RoundSpread
from compofa.profiler.schedule import (
    ProfileConfig,
    ProfileConfigError,
    ProfileError,
    Profiler,
    ProfileListener,
    ProfileResult,
    Progress,
    TimeAccount,
)
from compofa.profiler.stats import Summary, summarize

__all__ = [
    "Estimate",
    "Measurement",
    "ProfileConfig",
    "ProfileConfigError",
    "ProfileError",
    "ProfileListener",
    "ProfileResult",
    "Profiler",
    "Progress",
    "RoundRecord",
    "RoundSpread",
    "Summary",
    "TimeAccount",
    "summarize",
]
