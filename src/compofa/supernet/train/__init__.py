"""Training the supernet: phases as data (the paper's schedules as presets)."""

from compofa.supernet.train.phases import PHASE_KINDS, PRESETS, Phase, PhaseConfigError, preset, read_phases

__all__ = ["PHASE_KINDS", "PRESETS", "Phase", "PhaseConfigError", "preset", "read_phases"]
