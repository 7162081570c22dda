"""Design spaces: the choices and couplings of one subnet family, as data.

A design space is a tuple of per-stage choices over a model family. A stage
chooses a depth; each active block then chooses a kernel size and an expand
ratio, unless the space couples the expand ratio to the depth (CompOFA, paper
section 4.1: the i-th smallest depth goes with the i-th smallest expand ratio
for every block of the stage). Cardinality, uniform sampling, enumeration and
membership are all derived from this data; resolution is elastic and does not
count towards cardinality (paper section 4.1).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from compofa.errors import SpaceTooLargeError, SpecError
from compofa.space.family import Family
from compofa.space.spec import SubnetSpec

#: Resolutions the supernets are trained on (multiples of 4 from 128 to 224).
TRAIN_RESOLUTIONS: tuple[int, ...] = tuple(range(128, 225, 4))
#: Resolutions profiled and searched by default (those of the Note10 LUT).
SEARCH_RESOLUTIONS: tuple[int, ...] = tuple(range(160, 225, 4))
#: Spaces at most this large (per resolution) may be enumerated.
ENUMERATION_LIMIT = 100_000


@dataclass(frozen=True)
class StageChoices:
    """What one stage may choose.

    Attributes:
        depths: allowed numbers of active blocks.
        kernel_sizes: kernel sizes allowed for every active block.
        expand_ratios: expand ratios allowed for every active block.
        expand_for_depth: when non-empty, ``(depth, expand_ratio)`` pairs that
            fix every block's expand ratio from the stage's depth (the CompOFA
            coupling); `expand_ratios` then lists the coupled values.
    """

    depths: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[int, ...]
    expand_for_depth: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        for name in ("depths", "kernel_sizes", "expand_ratios"):
            values = getattr(self, name)
            # Single digits keep the canonical text form unambiguous.
            if not values or any(not 1 <= value <= 9 for value in values):
                raise ValueError(f"StageChoices.{name} must be non-empty single digits, got {values}")
        if self.expand_for_depth and {d for d, _ in self.expand_for_depth} != set(self.depths):
            raise ValueError("StageChoices.expand_for_depth must give an expand ratio for every depth")

    @property
    def coupled(self) -> bool:
        return bool(self.expand_for_depth)

    def expand_options(self, depth: int) -> tuple[int, ...]:
        if self.coupled:
            return (dict(self.expand_for_depth)[depth],)
        return self.expand_ratios

    def count(self, depth: int) -> int:
        """Configurations of this stage at `depth`."""
        per_block = len(self.kernel_sizes) * (1 if self.coupled else len(self.expand_ratios))
        return per_block**depth

    @property
    def cardinality(self) -> int:
        return sum(self.count(depth) for depth in self.depths)

    def configurations(self) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
        """Every (kernel sizes, expand ratios) of this stage, in a fixed order."""
        for depth in self.depths:
            expand_rows = (
                [(self.expand_options(depth)[0],) * depth]
                if self.coupled
                else list(itertools.product(self.expand_ratios, repeat=depth))
            )
            for kernels in itertools.product(self.kernel_sizes, repeat=depth):
                for expands in expand_rows:
                    yield kernels, expands

    def describe(self) -> str:
        kernels = "k" + "/".join(map(str, self.kernel_sizes))
        if self.coupled:
            pairs = ", ".join(f"d{d}->e{e}" for d, e in self.expand_for_depth)
            return f"{pairs}; {kernels} per block"
        depths = "d" + "/".join(map(str, self.depths))
        expands = "e" + "/".join(map(str, self.expand_ratios))
        return f"{depths}; {kernels}, {expands} per block"


@dataclass(frozen=True)
class DesignSpace:
    """A registered space of subnets over one model family.

    Attributes:
        name: registry name, also the first part of every spec's text form.
        family: the supernet skeleton the subnets share.
        stages: one `StageChoices` per stage of the family.
        description: one line for listings.
        kernel_transform: whether the supernets trained for this space use
            OFA's learned 7->5->3 kernel transform (on for OFA, off for CompOFA,
            whose reference code trains plain centre crops).
        resolutions: every resolution a spec may have.
        search_resolutions: resolutions profiled and searched by default.
    """

    name: str
    family: Family
    stages: tuple[StageChoices, ...]
    description: str
    kernel_transform: bool
    resolutions: tuple[int, ...] = TRAIN_RESOLUTIONS
    search_resolutions: tuple[int, ...] = SEARCH_RESOLUTIONS

    def __post_init__(self) -> None:
        if len(self.stages) != len(self.family.stages):
            raise ValueError(f"space {self.name!r} has {len(self.stages)} stages; family has {len(self.family.stages)}")
        for stage, (choices, stage_def) in enumerate(zip(self.stages, self.family.stages)):
            if max(choices.depths) > stage_def.max_depth:
                raise ValueError(f"space {self.name!r} stage {stage} allows more blocks than the family has")
            if not set(choices.kernel_sizes) <= set(self.family.kernel_sizes):
                raise ValueError(f"space {self.name!r} stage {stage} allows a kernel the family lacks")
            if max(choices.expand_ratios) > self.family.max_expand_ratio:
                raise ValueError(f"space {self.name!r} stage {stage} allows an expand ratio above the family's")
        if not set(self.search_resolutions) <= set(self.resolutions):
            raise ValueError(f"space {self.name!r}: search resolutions must be allowed resolutions")

    # -- counting ---------------------------------------------------------------

    @property
    def cardinality(self) -> int:
        """Distinct subnets at one resolution (exact)."""
        return math.prod(stage.cardinality for stage in self.stages)

    @property
    def enumerable(self) -> bool:
        return self.cardinality <= ENUMERATION_LIMIT

    # -- membership -------------------------------------------------------------

    def check(self, spec: SubnetSpec) -> None:
        """Raise `SpecError` naming the first value of `spec` outside this space, in the terms of the canonical text
        (stage, block, kernel size) with its field (``kernel_sizes[3]``) for readers of specs as data."""
        if spec.space != self.name:
            raise SpecError(f"the subnet is of space {spec.space!r}, not {self.name!r}")
        self.check_resolution(spec.resolution)
        if len(spec.depths) != len(self.stages):
            raise SpecError(
                f"the subnet's depths name {len(spec.depths)} stages; space {self.name!r} has {len(self.stages)}"
            )
        block = 0
        for stage, (choices, depth) in enumerate(zip(self.stages, spec.depths)):
            if depth not in choices.depths:
                raise SpecError(
                    f"stage {stage} has depth {depth} (depths[{stage}]); space {self.name!r} allows "
                    f"{', '.join(map(str, choices.depths))} there"
                )
            expands = choices.expand_options(depth)
            for index in range(depth):
                kernel, expand = spec.kernel_sizes[block], spec.expand_ratios[block]
                if kernel not in choices.kernel_sizes:
                    raise SpecError(
                        f"block {index} of stage {stage} has kernel size {kernel} (kernel_sizes[{block}]); space "
                        f"{self.name!r} allows {', '.join(map(str, choices.kernel_sizes))} there"
                    )
                if expand not in expands:
                    why = f"; depth {depth} couples to expand ratio {expands[0]}" if choices.coupled else ""
                    raise SpecError(
                        f"block {index} of stage {stage} has expand ratio {expand} (expand_ratios[{block}]); space "
                        f"{self.name!r} allows {', '.join(map(str, expands))} there{why}"
                    )
                block += 1

    def missing_from(self, other: DesignSpace) -> str | None:
        """A choice some subnet of this space makes that `other` does not allow, or None if `other` holds them all.

        Resolution is left out: the weights are the same at every resolution.
        """
        if self.family.name != other.family.name:
            return f"the {self.family.name} family"
        for stage, (mine, theirs) in enumerate(zip(self.stages, other.stages)):
            kernels = sorted(set(mine.kernel_sizes) - set(theirs.kernel_sizes))
            if kernels:
                return f"kernel size {kernels[0]} in stage {stage}"
            for depth in mine.depths:
                if depth not in theirs.depths:
                    return f"depth {depth} in stage {stage}"
                expands = sorted(set(mine.expand_options(depth)) - set(theirs.expand_options(depth)))
                if expands:
                    return f"expand ratio {expands[0]} at depth {depth} in stage {stage}"
        return None

    def contains(self, spec: SubnetSpec) -> bool:
        try:
            self.check(spec)
        except SpecError:
            return False
        return True

    # -- sampling and enumeration ------------------------------------------------

    def sample(self, rng: np.random.Generator, resolutions: Sequence[int] | None = None) -> SubnetSpec:
        """One subnet drawn uniformly from the space (and from `resolutions`).

        Uniform over subnets, not over depths: a stage's depth is drawn with
        probability proportional to how many configurations it has. (OFA's
        training sampler draws depths uniformly instead.)
        """
        choices_r = self._resolutions(resolutions)
        resolution = int(choices_r[rng.integers(len(choices_r))])
        depths, kernels, expands = [], [], []
        for choices in self.stages:
            weights = np.array([choices.count(depth) for depth in choices.depths], dtype=float)
            depth = int(choices.depths[rng.choice(len(choices.depths), p=weights / weights.sum())])
            depths.append(depth)
            kernels += [int(k) for k in rng.choice(choices.kernel_sizes, size=depth)]
            expands += [int(e) for e in rng.choice(choices.expand_options(depth), size=depth)]
        return SubnetSpec(self.name, resolution, tuple(depths), tuple(kernels), tuple(expands))

    def sample_many(
        self, rng: np.random.Generator, count: int, resolutions: Sequence[int] | None = None
    ) -> list[SubnetSpec]:
        return [self.sample(rng, resolutions) for _ in range(count)]

    def enumerate(self, resolutions: Iterable[int] | None = None) -> Iterator[SubnetSpec]:
        """Every subnet at each of `resolutions` (default: the search resolutions).

        Raises at the call (not at the first item) if the space is too large
        or a resolution is not allowed.
        """
        if not self.enumerable:
            raise SpaceTooLargeError(
                f"space {self.name!r} has {self.cardinality:.3g} subnets per resolution; only spaces of at most "
                f"{ENUMERATION_LIMIT} can be enumerated: sample it instead"
            )
        return self._enumerate(self._resolutions(resolutions))

    def _enumerate(self, resolutions: tuple[int, ...]) -> Iterator[SubnetSpec]:
        stage_options = [list(choices.configurations()) for choices in self.stages]
        for resolution in resolutions:
            for combination in itertools.product(*stage_options):
                yield SubnetSpec(
                    self.name,
                    resolution,
                    tuple(len(kernels) for kernels, _ in combination),
                    tuple(k for kernels, _ in combination for k in kernels),
                    tuple(e for _, expands in combination for e in expands),
                )

    def largest(self, resolution: int | None = None) -> SubnetSpec:
        return self._extreme(max, resolution)

    def smallest(self, resolution: int | None = None) -> SubnetSpec:
        return self._extreme(min, resolution)

    def _extreme(self, pick: Callable[[Sequence[int]], int], resolution: int | None) -> SubnetSpec:
        resolution = pick(self.search_resolutions) if resolution is None else int(resolution)
        depths = [pick(choices.depths) for choices in self.stages]
        kernels = [pick(c.kernel_sizes) for c, d in zip(self.stages, depths) for _ in range(d)]
        expands = [pick(c.expand_options(d)) for c, d in zip(self.stages, depths) for _ in range(d)]
        return SubnetSpec(self.name, resolution, tuple(depths), tuple(kernels), tuple(expands))

    def _resolutions(self, resolutions: Iterable[int] | None) -> tuple[int, ...]:
        chosen = tuple(int(r) for r in (self.search_resolutions if resolutions is None else resolutions))
        if not chosen:
            raise SpecError("no resolutions given")
        for resolution in chosen:
            self.check_resolution(resolution)
        return chosen

    def check_resolution(self, resolution: int) -> None:
        if resolution not in self.resolutions:
            raise SpecError(
                f"space {self.name!r} has no resolution {resolution}: it takes {describe_range(self.resolutions)}"
            )


def describe_range(values: Sequence[int]) -> str:
    """`128..224 step 4` for an arithmetic sequence, else the list."""
    if len(values) > 2:
        step = values[1] - values[0]
        if all(b - a == step for a, b in zip(values, values[1:])):
            return f"{values[0]}..{values[-1]} step {step}"
    return ", ".join(map(str, values))
