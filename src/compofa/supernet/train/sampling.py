"""Which subnets a training step trains: drawn from the phase's space, within the choices it unlocks.

As OFA's training sampler does: each stage's depth uniformly from the allowed
depths, then each block's kernel size and expand ratio uniformly from the
allowed ones (in a coupled space, the expand ratio its depth allows). Every rank
draws from a generator seeded by (seed, epoch, step), so all ranks train the
same subnets at the same resolution without talking to each other.
"""

from __future__ import annotations

import numpy as np

from compofa.space import SubnetSpec, get_space
from compofa.supernet.train.phases import Phase, PhaseConfigError


def step_generator(seed: int, epoch: int, step: int) -> np.random.Generator:
    """The generator of one step's draws; the same on every rank."""
    return np.random.default_rng([seed, epoch, step])


class PhaseSampler:
    """Draws the subnets of one phase."""

    def __init__(self, phase: Phase) -> None:
        self.phase = phase
        self.space = phase.space
        design = get_space(phase.space)
        self._stages: list[tuple[tuple[int, ...], tuple[int, ...], dict[int, tuple[int, ...]]]] = []
        for index, stage in enumerate(design.stages):
            depths = tuple(d for d in stage.depths if phase.depths is None or d in phase.depths)
            kernels = tuple(k for k in stage.kernel_sizes if phase.kernel_sizes is None or k in phase.kernel_sizes)
            expands = {d: tuple(e for e in stage.expand_options(d)
                                if phase.expand_ratios is None or e in phase.expand_ratios) for d in depths}
            depths = tuple(d for d in depths if expands[d])  # a coupled depth whose ratio is locked is out
            if not depths or not kernels:
                raise PhaseConfigError(
                    f"phase {phase.name!r} leaves stage {index} of {phase.space} no subnet (depths {phase.depths}, "
                    f"kernel sizes {phase.kernel_sizes}, expand ratios {phase.expand_ratios})"
                )
            self._stages.append((depths, kernels, expands))

    def draw(self, rng: np.random.Generator, resolution: int) -> SubnetSpec:
        depths, kernels, expands = [], [], []
        for allowed_depths, allowed_kernels, allowed_expands in self._stages:
            depth = int(allowed_depths[rng.integers(len(allowed_depths))])
            depths.append(depth)
            kernels += [int(allowed_kernels[i]) for i in rng.integers(len(allowed_kernels), size=depth)]
            options = allowed_expands[depth]
            expands += [int(options[i]) for i in rng.integers(len(options), size=depth)]
        return SubnetSpec(self.space, resolution, tuple(depths), tuple(kernels), tuple(expands))

    def draw_step(self, seed: int, epoch: int, step: int) -> tuple[int, tuple[SubnetSpec, ...]]:
        """One step's resolution and its `subnets_per_step` subnets."""
        rng = step_generator(seed, epoch, step)
        resolutions = self.phase.resolutions
        resolution = int(resolutions[rng.integers(len(resolutions))])
        return resolution, tuple(self.draw(rng, resolution) for _ in range(self.phase.subnets_per_step))

    def largest(self, resolution: int) -> SubnetSpec:
        """The largest subnet the phase trains (the teacher phase trains only it)."""
        depths, kernels, expands = [], [], []
        for allowed_depths, allowed_kernels, allowed_expands in self._stages:
            depth = max(allowed_depths)
            depths.append(depth)
            kernels += [max(allowed_kernels)] * depth
            expands += [max(allowed_expands[depth])] * depth
        return SubnetSpec(self.space, resolution, tuple(depths), tuple(kernels), tuple(expands))
