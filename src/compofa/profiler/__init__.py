"""Noise-aware measurement: statistics, interleaved drift-corrected rounds, the machine's noise."""

from compofa.profiler.measurement import (
    Estimate,
    MachineSpread,
    Measurement,
    RoundRecord,
    RoundSpread,
    noise_warning,
)
from compofa.profiler.noise import DISTURBED_NOISE, disturbance_threshold, reference_moved, reference_noise
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
    "DISTURBED_NOISE",
    "NOISY",
    "TIME_BUDGET",
    "UNFINISHED",
    "Estimate",
    "MachineSpread",
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
    "disturbance_threshold",
    "noise_warning",
    "reference_moved",
    "reference_noise",
    "summarize",
]
