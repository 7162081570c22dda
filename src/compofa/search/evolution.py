"""Evolutionary search for the most accurate subnet under a latency target.

The algorithm is OFA's (Cai et al., ICLR 2020; docs/architecture.md, "Search"): a
population of feasible subnets; each generation keeps the most accurate
quarter as parents and refills the population with mutants of one parent and
crossovers of two, every child redrawn until it meets the latency target.
The CompOFA paper runs the same search on its coupled spaces (section 5.3),
where a depth change redraws the coupled expand ratio of the whole stage and
crossover takes a whole stage from one parent, and cuts the generations to 300
(elastic kernel) and 50 (fixed kernel) without loss (appendix A.4).

Everything works on `ArchBatch` arrays, a whole generation per numpy call; a
`SubnetSpec` is built once, for the winner. 500 generations of 100 on
`ofa-mbv3` cost about 0.2 s of search overhead on top of the objective.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any, Literal

import numpy as np

from compofa.errors import CompofaError
from compofa.search.arrays import ArchBatch, layout_of
from compofa.search.targets import InfeasibleTargetError
from compofa.space import SubnetSpec, get_space
from compofa.space.design import StageChoices, describe_range

#: Scores a batch, one value per row: accuracy (higher is better) or latency in ms.
Objective = Callable[[ArchBatch], np.ndarray]
#: Which candidates meet the target, from their latencies and rows: a bool mask.
#: The default is ``latencies <= target``; a caller with measurements may use the
#: upper bound of a confidence interval, or treat a latency bucket as a tie.
Feasibility = Callable[[np.ndarray, ArchBatch], np.ndarray]
StopReason = Literal["generations", "patience"]

# Tables indexed by a value: StageChoices keeps kernel sizes, expand ratios and depths to single digits.
_VALUE_SLOTS = 10
# Candidates are proposed and timed at most this many at a time. Larger batches
# were slower here: their temporaries are big enough for the allocator to map
# fresh pages for each (8192 rows: 0.45 s for the 15 ms Note10 target's first
# population against 0.25 s at 2048).
_MAX_SAMPLE_BATCH = 2048
# Patience of the default config. On ofa-mbv3 with OFA's accuracy predictor and
# the Note10 LUT (targets 15-30 ms, 24 runs), stopping after 100 generations
# without improvement ended the runs after 100-400 generations with the same
# best accuracy on average as all 500 (mean difference below 0.0001): see the
# note at `EvolutionConfig.patience`. 50 lost up to 0.002 on some runs.
DEFAULT_PATIENCE = 100


# -- per-space tables -----------------------------------------------------------------


@dataclass(frozen=True)
class _Choices:
    """Per-column value choices as one flat table, drawn from by index arithmetic."""

    flat: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, rows: Sequence[Sequence[int]]) -> _Choices:
        counts = np.array([len(row) for row in rows], dtype=np.intp)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
        return cls(np.array([v for row in rows for v in row], dtype=np.int8), offsets, counts)

    def pick(self, draws: np.ndarray) -> np.ndarray:
        """Column j of uniform `draws` in [0, 1) mapped uniformly onto column j's choices."""
        scaled = draws * self.counts.astype(draws.dtype)  # same dtype: no float64 copy of float32 draws
        return self.flat.take(self.offsets + scaled.astype(np.intp))


@dataclass(frozen=True)
class _Genome:
    """A space's choices as arrays, so that operators index instead of looping.

    `coupled_expand[stage * _VALUE_SLOTS + depth]` is a coupled stage's expand
    ratio at that depth; `depth_cdf[s]` holds the cumulative probabilities of
    stage s's depths (`depth_table[s]`) under uniform sampling of subnets,
    `uniform_depth_cdf[s]` those of equally likely depths, both padded with 1.0
    (which a draw in [0, 1) never reaches). The `*_allowed` tables answer
    membership by value.
    """

    num_blocks: int
    num_stages: int
    block_stage: np.ndarray
    block_index: np.ndarray
    depths: _Choices
    depth_table: np.ndarray
    depth_cdf: np.ndarray
    uniform_depth_cdf: np.ndarray
    kernels: _Choices
    expands: _Choices
    coupled_block: np.ndarray
    any_coupled: bool
    coupled_expand: np.ndarray
    depth_allowed: np.ndarray
    kernel_allowed: np.ndarray
    expand_allowed: np.ndarray
    resolution_allowed: np.ndarray

    def active(self, depth: np.ndarray) -> np.ndarray:
        """(N, blocks) True where a block lies within its stage's depth."""
        return self.block_index < depth[:, self.block_stage]

    def coupled(self, depth: np.ndarray) -> np.ndarray:
        """(N, blocks) the coupled expand ratio of every block's stage at `depth` (0 if uncoupled)."""
        return self.coupled_expand.take(self.block_stage * _VALUE_SLOTS + depth[:, self.block_stage])


def _allowed(rows: Sequence[Sequence[int]]) -> np.ndarray:
    table = np.zeros((len(rows), _VALUE_SLOTS), dtype=bool)
    for row, values in enumerate(rows):
        table[row, list(values)] = True
    return table


def _depth_tables(stages: Sequence[StageChoices]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth choices padded to one width, and two cumulative distributions over them:
    proportional to each depth's configurations (uniform over subnets) and uniform."""
    width = max(len(choices.depths) for choices in stages)
    table = np.array([list(c.depths) + [c.depths[-1]] * (width - len(c.depths)) for c in stages], dtype=np.int8)
    by_subnets, uniform = np.ones(table.shape), np.ones(table.shape)
    for stage, choices in enumerate(stages):
        weights = np.array([choices.count(depth) for depth in choices.depths], dtype=float)
        by_subnets[stage, : len(weights) - 1] = (np.cumsum(weights) / weights.sum())[:-1]
        uniform[stage, : len(weights) - 1] = np.arange(1, len(weights)) / len(weights)
    return table, by_subnets, uniform


@cache
def _genome(space: str) -> _Genome:
    design = get_space(space)
    stages = design.stages
    layout = layout_of(space)
    block_stage = layout.block_stage()
    coupled_expand = np.zeros(len(stages) * _VALUE_SLOTS, dtype=np.int8)
    for stage, choices in enumerate(stages):
        for depth, expand in choices.expand_for_depth:
            coupled_expand[stage * _VALUE_SLOTS + depth] = expand
    block_kernels = [stages[s].kernel_sizes for s in block_stage]
    block_expands = [stages[s].expand_ratios for s in block_stage]
    depth_table, depth_cdf, uniform_depth_cdf = _depth_tables(stages)
    resolution_allowed = np.zeros(max(design.resolutions) + 1, dtype=bool)
    resolution_allowed[list(design.resolutions)] = True
    coupled_block = np.array([stages[s].coupled for s in block_stage], dtype=bool)
    return _Genome(
        num_blocks=layout.num_blocks,
        num_stages=layout.num_stages,
        block_stage=block_stage,
        block_index=layout.block_index_in_stage(),
        depths=_Choices.of([choices.depths for choices in stages]),
        depth_table=depth_table,
        depth_cdf=depth_cdf,
        uniform_depth_cdf=uniform_depth_cdf,
        kernels=_Choices.of(block_kernels),
        expands=_Choices.of(block_expands),
        coupled_block=coupled_block,
        any_coupled=bool(coupled_block.any()),
        coupled_expand=coupled_expand,
        depth_allowed=_allowed([choices.depths for choices in stages]),
        kernel_allowed=_allowed(block_kernels),
        expand_allowed=_allowed(block_expands),
        resolution_allowed=resolution_allowed,
    )


@lru_cache(maxsize=256)
def _resolution_choices(space: str, resolutions: tuple[int, ...] | None) -> _Choices:
    """The resolutions to draw from (default: the space's search resolutions), checked once."""
    design = get_space(space)
    chosen = design.search_resolutions if resolutions is None else resolutions
    if not chosen:
        raise ValueError("resolutions must not be empty")
    for resolution in chosen:
        design.check_resolution(resolution)
    return _Choices(np.array(chosen, dtype=np.int16), np.zeros(1, dtype=np.intp), np.array([len(chosen)]))


def _resolutions_of(space: str, resolutions: Sequence[int] | None) -> _Choices:
    return _resolution_choices(space, None if resolutions is None else tuple(int(r) for r in resolutions))


def _finish(
    space: str, genome: _Genome, depth: np.ndarray, kernel: np.ndarray, expand: np.ndarray, resolution: np.ndarray
) -> ArchBatch:
    """Apply the depth->expand coupling and zero the inactive blocks."""
    if genome.any_coupled:
        expand = np.where(genome.coupled_block, genome.coupled(depth), expand)
    active = genome.active(depth)
    zero = np.int8(0)
    return ArchBatch(space, np.where(active, kernel, zero), np.where(active, expand, zero), depth, resolution)


# -- operators ------------------------------------------------------------------------


def sample_batch(
    space: str,
    n: int,
    rng: np.random.Generator,
    resolutions: Sequence[int] | None = None,
    uniform_depth: bool = False,
) -> ArchBatch:
    """`n` subnets drawn at random from `space` (resolutions uniformly from `resolutions`).

    By default uniformly over subnets, as `DesignSpace.sample`: each stage's
    depth with probability proportional to its number of configurations, then
    every block's kernel and expand ratio uniformly (or the coupled expand
    ratio). With `uniform_depth` every depth is equally likely instead, as in
    OFA's `random_sample_arch`, which seeds its evolution: uniform over
    `ofa-mbv3` subnets gives a stage depth 4 with probability 6561/7371, so that
    small subnets (the Note10 15 ms target) almost never come up.
    """
    return _sample(space, _genome(space), n, rng, _resolutions_of(space, resolutions), uniform_depth)


def _sample(
    space: str, genome: _Genome, n: int, rng: np.random.Generator, resolutions: _Choices, uniform_depth: bool
) -> ArchBatch:
    stages, blocks = genome.num_stages, genome.num_blocks
    draws = rng.random((n, stages + 2 * blocks + 1), dtype=np.float32)  # 24 bits: ample for <= 10 choices
    cdf = genome.uniform_depth_cdf if uniform_depth else genome.depth_cdf
    depth = genome.depth_table[np.arange(stages), (draws[:, :stages, None] >= cdf).sum(axis=2)]
    kernel = genome.kernels.pick(draws[:, stages : stages + blocks])
    expand = genome.expands.pick(draws[:, stages + blocks : -1])
    return _finish(space, genome, depth, kernel, expand, resolutions.pick(draws[:, -1]))


def mutate(
    batch: ArchBatch,
    rng: np.random.Generator,
    probability: float = 0.1,
    resolution_probability: float = 0.5,
    resolutions: Sequence[int] | None = None,
) -> ArchBatch:
    """One mutant per row, as OFA's `mutate_arch`/`mutate_resolution`.

    With `probability` per stage the depth is redrawn uniformly over the
    stage's depths (OFA's `random.choice`; in a coupled stage this redraws the
    expand ratio of the whole stage); with `probability` per block its kernel
    and expand ratio are redrawn together (one coin per block, as OFA); the
    resolution is redrawn with `resolution_probability` (OFA: 0.5). Blocks a
    grown stage adds get fresh values: OFA keeps stale values there, which were
    themselves drawn at random, so the distribution is the same.
    """
    for name, value in (("probability", probability), ("resolution_probability", resolution_probability)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"mutate: {name} must lie in [0, 1], got {value!r}")
    genome = _genome(batch.space)
    choices = _resolutions_of(batch.space, resolutions)
    return _offspring(genome, batch, batch, rng, probability, resolution_probability, choices)


def crossover(parents_a: ArchBatch, parents_b: ArchBatch, rng: np.random.Generator) -> ArchBatch:
    """One child per row pair, every gene from either parent with probability 1/2.

    OFA spaces follow OFA's `crossover_sample`: each stage's depth, each
    block's kernel and each block's expand ratio independently from either
    parent. OFA keeps values in inactive blocks; these arrays hold 0 there, so a
    block only the deeper parent has active (the child took that depth) comes
    from that parent. Coupled (CompOFA) stages come whole from one parent:
    depth, expand ratios and kernels together.
    """
    if parents_a.space != parents_b.space or len(parents_a) != len(parents_b):
        raise ValueError(
            f"crossover needs parents of one space in equal numbers; got {len(parents_a)} of "
            f"{parents_a.space!r} and {len(parents_b)} of {parents_b.space!r}"
        )
    genome = _genome(parents_a.space)
    return _offspring(genome, parents_a, parents_b, rng, 0.0, 0.0, _resolutions_of(parents_a.space, None))


def _offspring(
    genome: _Genome,
    parents_a: ArchBatch,
    parents_b: ArchBatch,
    rng: np.random.Generator,
    probability: float | np.ndarray,
    resolution_probability: float | np.ndarray,
    resolutions: _Choices,
) -> ArchBatch:
    """Crossover of `parents_a` and `parents_b`, then mutation: the one implementation of both.

    Crossing a row with itself returns it, and mutating with probability 0
    changes nothing, so `mutate` and `crossover` are the two special cases and
    a generation makes its mutants and crossovers in one call, with the
    probabilities given per row as (N, 1) arrays.
    """
    stages, blocks = genome.num_stages, genome.num_blocks
    draws = rng.random((len(parents_a), 3 * stages + 5 * blocks + 3), dtype=np.float32)
    cut = np.cumsum([stages, blocks, blocks, 1, stages, stages, blocks, blocks, blocks, 1])
    (stage_coin, kernel_coin, expand_coin, resolution_coin, depth_redraw, depth_draw, block_redraw,
     kernel_draw, expand_draw, resolution_redraw, resolution_draw) = np.split(draws, cut, axis=1)  # fmt: skip

    # Crossover (OFA's crossover_sample): every gene from a with probability 1/2.
    stage_from_a = stage_coin < 0.5
    whole_stage = stage_from_a[:, genome.block_stage]
    kernel_from_a = np.where(genome.coupled_block, whole_stage, kernel_coin < 0.5)
    expand_from_a = np.where(genome.coupled_block, whole_stage, expand_coin < 0.5)
    active_a = parents_a.kernel != 0
    both = active_a & (parents_b.kernel != 0)  # else: the one parent with the block active
    kernel = np.where(np.where(both, kernel_from_a, active_a), parents_a.kernel, parents_b.kernel)
    expand = np.where(np.where(both, expand_from_a, active_a), parents_a.expand, parents_b.expand)
    crossed_depth = np.where(stage_from_a, parents_a.depth, parents_b.depth)
    resolution = np.where(resolution_coin[:, 0] < 0.5, parents_a.resolution, parents_b.resolution)

    # Mutation (OFA's mutate_arch and mutate_resolution).
    depth = np.where(depth_redraw < probability, genome.depths.pick(depth_draw), crossed_depth)
    grown = genome.active(depth) & ~genome.active(crossed_depth)
    redraw = (block_redraw < probability) | grown
    kernel = np.where(redraw, genome.kernels.pick(kernel_draw), kernel)
    expand = np.where(redraw, genome.expands.pick(expand_draw), expand)
    new_resolution = resolutions.pick(resolution_draw[:, 0])
    resolution = np.where(resolution_redraw[:, 0] < np.ravel(resolution_probability), new_resolution, resolution)
    return _finish(parents_a.space, genome, depth, kernel, expand, resolution)


def is_member(batch: ArchBatch) -> np.ndarray:
    """(N,) True where a row is a subnet of its space (what `DesignSpace.check` accepts).

    Checks every depth, every active block's kernel and expand ratio (the
    coupled one where the stage is coupled), zeros in the inactive blocks and
    an allowed resolution. A batch whose arrays have the wrong shape is a
    `ValueError`.
    """
    genome = _genome(batch.space)
    rows = len(batch)
    shapes = {"kernel": (rows, genome.num_blocks), "expand": (rows, genome.num_blocks),
              "depth": (rows, genome.num_stages)}
    for name, shape in shapes.items():
        actual = getattr(batch, name).shape
        if actual != shape:
            raise ValueError(f"ArchBatch.{name} has shape {actual}; space {batch.space!r} needs {shape}")

    def allowed(table: np.ndarray, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
        values = values.astype(np.intp)
        inside = (values >= 0) & (values < table.shape[-1])
        return inside & table[columns, values.clip(0, table.shape[-1] - 1)]

    blocks = np.arange(genome.num_blocks)
    depth_ok = np.asarray(allowed(genome.depth_allowed, np.arange(genome.num_stages), batch.depth).all(axis=1))
    depth = np.where(depth_ok[:, None], batch.depth, 0).astype(np.intp)
    active = genome.active(depth)
    kernel_ok = allowed(genome.kernel_allowed, blocks, batch.kernel)
    expand_free = allowed(genome.expand_allowed, blocks, batch.expand)
    expand_ok = np.where(genome.coupled_block, batch.expand == genome.coupled(depth), expand_free)
    block_ok = np.where(active, kernel_ok & expand_ok, (batch.kernel == 0) & (batch.expand == 0)).all(axis=1)
    resolution_ok = allowed(genome.resolution_allowed[None, :], np.zeros(rows, dtype=np.intp), batch.resolution)
    return depth_ok & block_ok & resolution_ok


# -- the search -----------------------------------------------------------------------


class EvolutionConfigError(CompofaError, ValueError):
    """An evolution setting out of its range (a population of 0, a probability above 1)."""


@dataclass(frozen=True)
class EvolutionConfig:
    """Settings of one search; the defaults are OFA's (docs/architecture.md, "Search").

    Attributes:
        population: subnets per generation (OFA: 100).
        generations: most generations to run (OFA: 500; the CompOFA paper
            uses 300 for elastic and 50 for fixed kernels, see `for_space`).
        parent_ratio: share of the population kept as parents (OFA: 0.25).
        mutation_probability: chance that a mutant redraws a stage's depth, and
            a block's kernel and expand ratio (OFA: 0.1).
        resolution_probability: chance that a mutant redraws its resolution (OFA: 0.5).
        mutate_ratio: share of the children that are mutants; the rest are
            crossovers (OFA: 0.5).
        patience: stop after this many generations without a better best;
            None runs every generation. With elitist parents the best never
            gets worse, and late improvements are rare and tiny: see
            `DEFAULT_PATIENCE` for the measurement behind the default.
        max_rejections: candidates that may miss the target in one draw (the
            initial population, or one generation's children) before the search
            gives up with `InfeasibleTargetError` (OFA loops forever).
        distinct_parents: keep each subnet at most once among the parents.
            OFA keeps duplicates, and a good subnet found early then fills the
            parent pool with copies of itself, which narrows the search;
            False reproduces OFA exactly (benchmarks/search_speed.py compares).
    """

    population: int = 100
    generations: int = 500
    parent_ratio: float = 0.25
    mutation_probability: float = 0.1
    resolution_probability: float = 0.5
    mutate_ratio: float = 0.5
    patience: int | None = DEFAULT_PATIENCE
    max_rejections: int = 1_000_000
    distinct_parents: bool = True

    def __post_init__(self) -> None:
        for name in ("population", "generations", "max_rejections"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise EvolutionConfigError(f"EvolutionConfig.{name} must be a positive int, got {value!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise EvolutionConfigError(
                f"EvolutionConfig.patience must be a positive int or None, got {self.patience!r}")
        for name in ("parent_ratio", "mutation_probability", "resolution_probability", "mutate_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise EvolutionConfigError(f"EvolutionConfig.{name} must lie in [0, 1], got {value!r}")
        if self.parents < 1:
            raise EvolutionConfigError(
                f"EvolutionConfig.parent_ratio {self.parent_ratio} keeps no parent of a population of {self.population}"
            )

    @property
    def parents(self) -> int:
        """Parents kept per generation (OFA rounds the ratio)."""
        return int(round(self.parent_ratio * self.population))

    @property
    def mutants(self) -> int:
        """Mutants per generation; the other children are crossovers."""
        return int(round(self.mutate_ratio * self.population))

    @classmethod
    def for_space(cls, space: str, **changes: Any) -> EvolutionConfig:
        """The paper's generations for `space`: 50 for fixed kernels and 300 for
        elastic kernels in a coupled space (CompOFA appendix A.4), else OFA's 500."""
        stages = get_space(space).stages
        generations = 500
        if any(stage.coupled for stage in stages):
            generations = 50 if all(len(stage.kernel_sizes) == 1 for stage in stages) else 300
        return cls(**{"generations": generations, **changes})


@dataclass(frozen=True)
class EvolutionResult:
    """The outcome of `evolve`.

    Attributes:
        best: the winner as a one-row `ArchBatch`.
        spec: the winner as a `SubnetSpec`.
        accuracy: the winner's accuracy.
        latency: the winner's latency.
        target: the latency target searched under.
        trace: best accuracy of the initial population (index 0) and after
            each generation run.
        generations: generations run.
        latency_evaluations: rows passed to the latency callable.
        accuracy_evaluations: rows passed to the accuracy callable: each
            distinct subnet once, as accuracy is memoized.
        stop_reason: "generations" (all ran) or "patience" (no improvement).
    """

    best: ArchBatch
    spec: SubnetSpec
    accuracy: float
    latency: float
    target: float
    trace: np.ndarray
    generations: int
    latency_evaluations: int
    accuracy_evaluations: int
    stop_reason: StopReason


def _scores(objective: Objective, batch: ArchBatch, name: str) -> np.ndarray:
    values = np.asarray(objective(batch), dtype=float)
    if values.shape != (len(batch),):
        raise ValueError(f"the {name} callable returned shape {values.shape} for {len(batch)} subnets")
    if np.isnan(values).any():
        raise ValueError(f"the {name} callable returned NaN")
    return values


class _Memo:
    """An objective that scores each distinct subnet once.

    Objectives are deterministic, and evolution keeps revisiting subnets:
    on `ofa-mbv3` with the Note10 LUT only 20-40% of the 50,000 children of
    500 generations are new, so memoizing saves most predictor calls. The
    callable only ever sees rows it has not scored, each once.
    """

    def __init__(self, objective: Objective, name: str) -> None:
        self.objective, self.name = objective, name
        self.values: dict[bytes, float] = {}
        self.evaluations = 0

    def __call__(self, batch: ArchBatch) -> np.ndarray:
        keys = batch.key_list()
        values = self.values
        found = np.array([values.get(key, math.nan) for key in keys], dtype=float)
        missing = np.flatnonzero(np.isnan(found))  # _scores refuses NaN, so NaN means "not scored yet"
        if len(missing):
            first_of: dict[bytes, int] = {}
            for row in missing.tolist():
                first_of.setdefault(keys[row], row)
            rows = np.fromiter(first_of.values(), dtype=np.intp, count=len(first_of))
            scores = _scores(self.objective, batch.take(rows), self.name)
            self.evaluations += len(rows)
            values.update(zip(first_of, scores.tolist()))
            found[missing] = [values[keys[row]] for row in missing.tolist()]
        return found


@dataclass
class _Sampler:
    """Draws feasible candidates, counting evaluations and bounding rejections (so an
    infeasible target ends in an error, never in a search that cannot finish)."""

    space: str
    resolutions: _Choices
    latency: Objective
    feasible: Feasibility
    target: float
    max_rejections: int
    drawn: int = 0  # in the current draw (the initial population, or one generation)
    rejected: int = 0
    latency_evaluations: int = 0
    proposed: dict[tuple[str, int], int] = field(default_factory=dict)  # in this run, by (what, kind)
    accepted: dict[tuple[str, int], int] = field(default_factory=dict)
    fastest: float = math.inf

    def draw(
        self, propose: Callable[[list[int]], ArchBatch], counts: Sequence[int], what: str
    ) -> tuple[ArchBatch, np.ndarray]:
        """`counts[k]` feasible candidates of each kind k, kinds in order, with their latencies.

        `propose(sizes)` returns `sizes[k]` fresh candidates of each kind, kinds
        in order. Each kind is proposed in batches sized by its acceptance so
        far in this run, so that one round usually suffices, and keeps its first
        feasible candidates: a kind's feasible children follow the proposal
        distribution restricted to the target. (OFA instead retries one parent
        or pair until a child is feasible, one subnet at a time.)
        """
        self.drawn = self.rejected = 0
        total = sum(counts)
        needed = list(counts)
        kept: list[list[tuple[ArchBatch, np.ndarray]]] = [[] for _ in counts]
        for _ in range(total + self.max_rejections + 1):  # each round accepts or rejects one at least
            if not any(needed):
                break
            sizes = [self._proposals(what, kind, count) for kind, count in enumerate(needed)]
            candidates = propose(sizes)
            latencies, ok = self._evaluate(candidates, what, total - sum(needed), total)
            start = 0
            for kind, size in enumerate(sizes):
                accepted = start + np.flatnonzero(ok[start : start + size])
                self.proposed[what, kind] = self.proposed.get((what, kind), 0) + size
                self.accepted[what, kind] = self.accepted.get((what, kind), 0) + len(accepted)
                keep = accepted[: needed[kind]]
                kept[kind].append((candidates.take(keep), latencies[keep]))
                needed[kind] -= len(keep)
                start += size
        parts = [part for kind in kept for part in kind]
        return ArchBatch.concatenate([batch for batch, _ in parts]), np.concatenate([lat for _, lat in parts])

    def _proposals(self, what: str, kind: int, needed: int) -> int:
        """How many to propose for `needed` feasible ones: enough to expect `needed` plus two standard deviations."""
        if needed == 0:
            return 0
        proposed = self.proposed.get((what, kind), 0)
        acceptance = self.accepted.get((what, kind), 0) / proposed if proposed else 1.0
        wanted = (needed + 2.0 * math.sqrt(needed)) / max(acceptance, 1e-3)
        return int(min(max(needed, math.ceil(wanted)), _MAX_SAMPLE_BATCH))

    def _evaluate(self, candidates: ArchBatch, what: str, found: int, needed: int) -> tuple[np.ndarray, np.ndarray]:
        """Latencies and feasibility of `candidates`; raises once this draw rejected too many.

        `found` of the `needed` feasible `what` were found before this batch.
        """
        latencies = _scores(self.latency, candidates, "latency")
        self.latency_evaluations += len(candidates)
        ok = np.asarray(self.feasible(latencies, candidates), dtype=bool)
        if ok.shape != latencies.shape:
            raise ValueError(f"the feasibility rule returned shape {ok.shape} for {len(candidates)} subnets")
        self.drawn += len(candidates)
        self.rejected += len(candidates) - int(np.count_nonzero(ok))
        self.fastest = min(self.fastest, float(latencies.min()))
        if self.rejected > self.max_rejections:
            raise InfeasibleTargetError(self._message(what, found + int(np.count_nonzero(ok)), needed))
        return latencies, ok

    def _message(self, what: str, found: int, needed: int) -> str:
        resolutions = describe_range([int(r) for r in self.resolutions.flat])
        return (
            f"latency target {self.target:g} ms looks infeasible in space {self.space!r} (resolutions {resolutions}): "
            f"{self.rejected} of {self.drawn} {what} drawn missed it, {found} of the {needed} needed met it "
            f"(max_rejections {self.max_rejections}); the fastest latency seen was {self.fastest:.4g} ms"
        )


class _Breeder:
    """Makes one generation's children: mutants of one parent and crossovers of two.

    Both kinds come from one `_offspring` call: a mutant's two parents are the
    same row and a crossover child mutates with probability 0. Parents are
    drawn with replacement, as OFA's `np.random.randint`.
    """

    def __init__(self, genome: _Genome, config: EvolutionConfig, resolutions: _Choices) -> None:
        self.genome = genome
        self.config = config
        self.resolutions = resolutions

    def __call__(self, parents: ArchBatch, rng: np.random.Generator, sampler: _Sampler) -> tuple[ArchBatch, np.ndarray]:
        config = self.config

        def propose(sizes: list[int]) -> ArchBatch:
            mutants, crossovers = sizes
            first = rng.integers(len(parents), size=mutants + crossovers)
            second = np.concatenate([first[:mutants], rng.integers(len(parents), size=crossovers)])
            is_mutant = (np.arange(mutants + crossovers) < mutants)[:, None]
            return _offspring(
                self.genome,
                parents.take(first),
                parents.take(second),
                rng,
                np.where(is_mutant, config.mutation_probability, 0.0),
                np.where(is_mutant, config.resolution_probability, 0.0),
                self.resolutions,
            )

        counts = (config.mutants, config.population - config.mutants)
        return sampler.draw(propose, counts, "children (mutants and crossovers)")


def _parents(population: ArchBatch, accuracy: np.ndarray, count: int, distinct: bool) -> np.ndarray:
    """Rows of the `count` most accurate subnets, best first; with `distinct`, each subnet once."""
    order = _best_first(accuracy)
    if not distinct:
        return order[:count]
    _, first = np.unique(population.packed()[order], return_index=True)
    return order[np.sort(first)[:count]]


def _best_first(accuracy: np.ndarray) -> np.ndarray:
    """Row indices by accuracy, highest first; a tie keeps the earlier row (parents precede children)."""
    return np.argsort(-accuracy, kind="stable")


def evolve(
    space: str,
    accuracy: Objective,
    latency: Objective,
    target: float,
    config: EvolutionConfig | None = None,
    rng: np.random.Generator | None = None,
    resolutions: Sequence[int] | None = None,
    feasible: Feasibility | None = None,
) -> EvolutionResult:
    """The most accurate subnet of `space` that evolution finds within the latency `target`.

    Args:
        space: design space name.
        accuracy: scores a batch (higher is better); deterministic, as each
            distinct subnet is scored once.
        latency: latency per row of a batch, in ms; a costly source memoizes
            itself (as the measured ones of `compofa.search.latency` do).
        target: the latency limit.
        config: search settings (default `EvolutionConfig()`: OFA's, with patience).
        rng: the only source of randomness (default: seed 0).
        resolutions: input resolutions to search (default: the space's search resolutions).
        feasible: which candidates meet the target, from their latencies and
            rows (default ``latencies <= target``), for noise-aware rules.

    Raises:
        InfeasibleTargetError: more than `config.max_rejections` candidates of
            one draw missed the target.
    """
    config = EvolutionConfig() if config is None else config
    rng = np.random.default_rng(0) if rng is None else rng
    genome = _genome(space)
    choices = _resolutions_of(space, resolutions)
    rule = feasible if feasible is not None else (lambda latencies, _rows: latencies <= target)
    # Latency is not memoized here: lookup tables and FLOPs cost less to compute than to look up,
    # and measured sources memoize themselves (search/latency.py).
    accuracy_memo = _Memo(accuracy, "accuracy")
    sampler = _Sampler(space, choices, latency, rule, float(target), config.max_rejections)
    breed = _Breeder(genome, config, choices)

    def random_subnets(sizes: list[int]) -> ArchBatch:  # depths uniform, as OFA's random_sample_arch
        return _sample(space, genome, sizes[0], rng, choices, uniform_depth=True)

    population, population_latency = sampler.draw(random_subnets, (config.population,), "random subnets")
    population_accuracy = accuracy_memo(population)
    trace = [float(population_accuracy.max())]
    stale = 0
    stop_reason: StopReason = "generations"
    for _ in range(config.generations):
        order = _parents(population, population_accuracy, config.parents, config.distinct_parents)
        parents = population.take(order)
        children, children_latency = breed(parents, rng, sampler)
        children_accuracy = accuracy_memo(children)
        population = ArchBatch.concatenate([parents, children])
        population_latency = np.concatenate([population_latency[order], children_latency])
        population_accuracy = np.concatenate([population_accuracy[order], children_accuracy])
        trace.append(max(trace[-1], float(children_accuracy.max())))
        stale = stale + 1 if trace[-1] == trace[-2] else 0
        if config.patience is not None and stale >= config.patience:
            stop_reason = "patience"
            break
    winner = int(_best_first(population_accuracy)[0])
    best = population.take([winner])
    return EvolutionResult(
        best=best,
        spec=best.spec(0),
        accuracy=float(population_accuracy[winner]),
        latency=float(population_latency[winner]),
        target=float(target),
        trace=np.array(trace),
        generations=len(trace) - 1,
        latency_evaluations=sampler.latency_evaluations,
        accuracy_evaluations=accuracy_memo.evaluations,
        stop_reason=stop_reason,
    )
