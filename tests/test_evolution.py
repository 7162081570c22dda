"""Evolutionary search: operators never leave their space, sampling is uniform over
subnets, and evolution finds the brute-force optimum of a synthetic objective."""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
import pytest

from compofa.errors import CompofaError
from compofa.search.arrays import ArchBatch, enumerate_batch, layout_of
from compofa.search.evolution import (
    EvolutionConfig,
    InfeasibleTargetError,
    _parents,
    crossover,
    evolve,
    is_member,
    mutate,
    sample_batch,
)
from compofa.space import SEARCH_RESOLUTIONS, get_space, list_spaces

SPACES = [space.name for space in list_spaces()]
Objective = Callable[[ArchBatch], np.ndarray]


def synthetic(space: str, seed: int) -> tuple[Objective, Objective]:
    """Accuracy and latency as two fixed positive weighted sums of the genes.

    Both grow with every gene, so accuracy trades against latency and the
    best subnet under a target is a real search; random weights make ties
    unlikely.
    """
    rng = np.random.default_rng(seed)
    layout = layout_of(space)

    def weighted_sum() -> Objective:
        kernel_w, expand_w = rng.uniform(0.1, 1.0, (2, layout.num_blocks))
        depth_w, resolution_w = rng.uniform(0.1, 1.0, layout.num_stages), rng.uniform(0.01, 0.05)

        def score(batch: ArchBatch) -> np.ndarray:
            return batch.kernel @ kernel_w + batch.expand @ expand_w + batch.depth @ depth_w + batch.resolution * resolution_w

        return score

    return weighted_sum(), weighted_sum()


def chi_square(counts: np.ndarray, probabilities: np.ndarray) -> float:
    expected = counts.sum() * probabilities
    return float(((counts - expected) ** 2 / expected).sum())


# -- operators -------------------------------------------------------------------------


@pytest.mark.parametrize("space", SPACES)
def test_offspring_stay_in_their_space(space: str) -> None:
    rng = np.random.default_rng(1)
    design = get_space(space)
    batch = sample_batch(space, 400, rng)
    assert is_member(batch).all()
    assert is_member(sample_batch(space, 400, rng, uniform_depth=True)).all()
    for _ in range(25):
        mutants = mutate(batch, rng, probability=0.3, resolution_probability=0.5)
        children = crossover(batch, mutants.take(rng.permutation(len(mutants))), rng)
        assert is_member(mutants).all() and is_member(children).all()
        batch = ArchBatch.concatenate([mutants.take(np.arange(200)), children.take(np.arange(200))])
    for spec in batch.specs()[:100]:  # SubnetSpec construction checks membership too
        design.check(spec)


@pytest.mark.parametrize("space", SPACES)
def test_is_member_rejects_each_kind_of_corruption(space: str) -> None:
    batch = sample_batch(space, 6, np.random.default_rng(2))
    kernel, expand, depth, resolution = (a.copy() for a in (batch.kernel, batch.expand, batch.depth, batch.resolution))
    inactive = ~batch.active()
    active = batch.active()
    kernel[0, np.argmax(active[0])] = 4  # no family has kernel 4
    expand[1, np.argmax(active[1])] = 5  # nor expand ratio 5
    depth[2, 0] = 9
    resolution[3] = 161
    if inactive[4].any():
        kernel[4, np.argmax(inactive[4])] = 3  # a value in a block the depth leaves out
    else:
        depth[4, 0] = 0
    resolution[5] = 10_000
    corrupted = ArchBatch(space, kernel, expand, depth, resolution)
    assert is_member(batch).all()
    assert not is_member(corrupted).any()


def test_is_member_rejects_an_expand_ratio_against_the_coupling() -> None:
    batch = sample_batch("compofa", 200, np.random.default_rng(3))
    expand = batch.expand.copy()
    first = batch.layout.stage_starts[0]
    expand[:, first] = np.where(expand[:, first] == 6, 3, 6)  # every other choice breaks d->e
    assert not is_member(ArchBatch("compofa", batch.kernel, expand, batch.depth, batch.resolution)).any()
    assert is_member(enumerate_batch("compofa", SEARCH_RESOLUTIONS)).all()


def test_sampling_is_uniform_over_subnets() -> None:
    batch = sample_batch("ofa-mbv3", 30_000, np.random.default_rng(4))
    by_subnets = np.array([81, 729, 6561]) / 7371  # 9^d configurations at depth d
    for stage in range(batch.depth.shape[1]):
        counts = np.array([(batch.depth[:, stage] == d).sum() for d in (2, 3, 4)])
        assert chi_square(counts, by_subnets) < 25, (stage, counts)  # df 2: p < 4e-6 by chance
    active = batch.active()
    kernel_counts = np.array([(batch.kernel[active] == k).sum() for k in (3, 5, 7)])
    expand_counts = np.array([(batch.expand[active] == e).sum() for e in (3, 4, 6)])
    assert chi_square(kernel_counts, np.full(3, 1 / 3)) < 25
    assert chi_square(expand_counts, np.full(3, 1 / 3)) < 25
    resolution_counts = np.array([(batch.resolution == r).sum() for r in SEARCH_RESOLUTIONS])
    assert chi_square(resolution_counts, np.full(17, 1 / 17)) < 60  # df 16


def test_uniform_depth_sampling_gives_each_depth_a_third() -> None:
    batch = sample_batch("ofa-mbv3", 30_000, np.random.default_rng(5), uniform_depth=True)
    for stage in range(batch.depth.shape[1]):
        counts = np.array([(batch.depth[:, stage] == d).sum() for d in (2, 3, 4)])
        assert chi_square(counts, np.full(3, 1 / 3)) < 25


def _stage_slices(space: str) -> list[slice]:
    layout = layout_of(space)
    return [slice(start, start + size) for start, size in zip(layout.stage_starts, layout.stage_sizes)]


def test_compofa_crossover_takes_whole_stages() -> None:
    rng = np.random.default_rng(6)
    a, b = sample_batch("compofa-ek", 3000, rng), sample_batch("compofa-ek", 3000, rng)
    child = crossover(a, b, rng)
    mixed = np.zeros(len(child), dtype=bool)
    for stage, blocks in enumerate(_stage_slices("compofa-ek")):

        def same(parent: ArchBatch) -> np.ndarray:
            return (
                (child.kernel[:, blocks] == parent.kernel[:, blocks]).all(axis=1)
                & (child.expand[:, blocks] == parent.expand[:, blocks]).all(axis=1)
                & (child.depth[:, stage] == parent.depth[:, stage])
            )

        from_a, from_b = same(a), same(b)
        assert (from_a | from_b).all()
        mixed |= from_a & ~from_b
    assert mixed.any() and not mixed.all()  # stages do come from both parents


def test_ofa_crossover_takes_each_gene_from_a_parent() -> None:
    rng = np.random.default_rng(7)
    a, b = sample_batch("ofa-mbv3", 3000, rng), sample_batch("ofa-mbv3", 3000, rng)
    child = crossover(a, b, rng)
    assert ((child.depth == a.depth) | (child.depth == b.depth)).all()
    assert ((child.resolution == a.resolution) | (child.resolution == b.resolution)).all()
    active = child.active()
    for genes in ("kernel", "expand"):
        values, from_a, from_b = getattr(child, genes), getattr(a, genes), getattr(b, genes)
        assert ((values == from_a) | (values == from_b))[active].all()
    # kernel and expand ratio of one block are separate genes (OFA's crossover_sample)
    both_active = active & (a.kernel != 0) & (b.kernel != 0)
    split = (child.kernel == a.kernel) & (child.kernel != b.kernel) & (child.expand == b.expand) & (child.expand != a.expand)
    assert split[both_active].any()


@pytest.mark.parametrize("space", ["ofa-mbv3", "compofa"])
def test_mutation_probability_zero_changes_nothing(space: str) -> None:
    rng = np.random.default_rng(8)
    batch = sample_batch(space, 500, rng)
    same = mutate(batch, rng, probability=0.0, resolution_probability=0.0)
    assert (same.keys() == batch.keys()).all()
    changed = mutate(batch, rng, probability=1.0, resolution_probability=1.0)
    assert (changed.keys() != batch.keys()).mean() > 0.5


def test_mutation_grows_stages_with_valid_blocks() -> None:
    rng = np.random.default_rng(9)
    shallow = sample_batch("ofa-mbv3", 2000, rng)
    shallow = ArchBatch(
        "ofa-mbv3",
        np.where(shallow.active() & (layout_of("ofa-mbv3").block_index_in_stage() < 2), shallow.kernel, 0).astype(np.int8),
        np.where(shallow.active() & (layout_of("ofa-mbv3").block_index_in_stage() < 2), shallow.expand, 0).astype(np.int8),
        np.full_like(shallow.depth, 2),
        shallow.resolution,
    )
    assert is_member(shallow).all()
    grown = mutate(shallow, rng, probability=0.5)
    assert (grown.depth > 2).any() and is_member(grown).all()


# -- evolution -------------------------------------------------------------------------


def brute_force_best(space: str, accuracy: Objective, latency: Objective, target: float) -> float:
    everything = enumerate_batch(space, SEARCH_RESOLUTIONS)
    feasible = latency(everything) <= target
    return float(accuracy(everything)[feasible].max())


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("quantile", [0.05, 0.3, 0.6, 0.95])
def test_evolution_finds_the_brute_force_optimum(seed: int, quantile: float) -> None:
    accuracy, latency = synthetic("compofa", seed)
    target = float(np.quantile(latency(enumerate_batch("compofa", SEARCH_RESOLUTIONS)), quantile))
    # All 500 generations: patience may stop a run on a plateau short of the optimum.
    config = EvolutionConfig(patience=None)
    result = evolve("compofa", accuracy, latency, target, config, np.random.default_rng(seed))
    assert result.accuracy == pytest.approx(brute_force_best("compofa", accuracy, latency, target), abs=1e-12)
    assert result.latency <= target


def counting(objective: Objective) -> tuple[Objective, list[bytes]]:
    """`objective`, recording the key of every row it is asked to score."""
    seen: list[bytes] = []

    def counted(batch: ArchBatch) -> np.ndarray:
        seen.extend(batch.key_list())
        return objective(batch)

    return counted, seen


def test_result_describes_the_winner() -> None:
    accuracy, latency = synthetic("ofa-mbv3", 3)
    target = float(np.median(latency(sample_batch("ofa-mbv3", 1000, np.random.default_rng(0)))))
    config = EvolutionConfig(generations=60, patience=None)
    counted_accuracy, scored = counting(accuracy)
    counted_latency, timed = counting(latency)
    result = evolve("ofa-mbv3", counted_accuracy, counted_latency, target, config, np.random.default_rng(3))
    assert is_member(result.best).all() and len(result.best) == 1
    assert result.spec == result.best.spec(0)
    get_space("ofa-mbv3").check(result.spec)
    assert result.accuracy == pytest.approx(float(accuracy(result.best)[0]))
    assert result.latency == pytest.approx(float(latency(result.best)[0])) and result.latency <= target
    assert result.generations == 60 and result.stop_reason == "generations" and result.target == target
    assert len(result.trace) == 61 and (np.diff(result.trace) >= 0).all() and result.trace[-1] == result.accuracy
    # accuracy is memoized: each distinct subnet scored once, far fewer than the 6100 children and parents
    assert result.accuracy_evaluations == len(scored) == len(set(scored)) < 100 * 61
    assert result.latency_evaluations == len(timed) >= 100 * 61


def test_same_seed_same_result() -> None:
    accuracy, latency = synthetic("compofa-ek", 4)
    target = float(np.median(latency(sample_batch("compofa-ek", 1000, np.random.default_rng(0)))))
    config = EvolutionConfig(generations=40)
    first, second = (evolve("compofa-ek", accuracy, latency, target, config, np.random.default_rng(11)) for _ in range(2))
    assert first.spec == second.spec
    np.testing.assert_array_equal(first.trace, second.trace)
    assert first.latency_evaluations == second.latency_evaluations


def test_patience_stops_on_a_plateau() -> None:
    _, latency = synthetic("ofa-mbv3", 5)

    def flat(batch: ArchBatch) -> np.ndarray:
        return np.zeros(len(batch))

    target = float(latency(sample_batch("ofa-mbv3", 500, np.random.default_rng(0))).max())
    stopped = evolve("ofa-mbv3", flat, latency, target, EvolutionConfig(generations=500, patience=7))
    assert stopped.stop_reason == "patience" and stopped.generations == 7 and len(stopped.trace) == 8
    ran = evolve("ofa-mbv3", flat, latency, target, EvolutionConfig(generations=12, patience=None))
    assert ran.stop_reason == "generations" and ran.generations == 12


def test_an_infeasible_target_is_a_one_line_error() -> None:
    accuracy, latency = synthetic("compofa", 6)
    fastest = float(latency(enumerate_batch("compofa", SEARCH_RESOLUTIONS)).min())
    target = fastest * 0.9
    config = EvolutionConfig(max_rejections=3000)
    with pytest.raises(InfeasibleTargetError) as raised:
        evolve("compofa", accuracy, latency, target, config, np.random.default_rng(0))
    message = str(raised.value)
    assert isinstance(raised.value, CompofaError) and "\n" not in message
    assert f"latency target {target:g} ms" in message
    assert "max_rejections 3000" in message
    seen = float(re.search(r"fastest latency seen was ([0-9.e+-]+) ms", message).group(1))  # type: ignore[union-attr]
    assert fastest <= seen * (1 + 1e-3)


def test_parents_are_distinct_unless_asked_otherwise() -> None:
    rows = sample_batch("compofa", 3, np.random.default_rng(0))
    population = rows.take([0, 0, 1, 1, 2])
    accuracy = np.array([0.9, 0.9, 0.8, 0.8, 0.7])
    assert list(_parents(population, accuracy, 3, distinct=True)) == [0, 2, 4]
    assert list(_parents(population, accuracy, 3, distinct=False)) == [0, 1, 2]


def test_a_custom_feasibility_rule_decides() -> None:
    accuracy, latency = synthetic("compofa", 7)
    target = float(np.median(latency(enumerate_batch("compofa", SEARCH_RESOLUTIONS))))
    seen: list[int] = []

    def with_margin(latencies: np.ndarray, rows: ArchBatch) -> np.ndarray:
        seen.append(len(rows))
        return latencies * 1.2 <= target  # e.g. the upper end of a confidence interval

    result = evolve("compofa", accuracy, latency, target, EvolutionConfig(patience=None), feasible=with_margin)
    assert result.latency * 1.2 <= target
    assert sum(seen) == result.latency_evaluations
    margin_best = brute_force_best("compofa", accuracy, lambda b: latency(b) * 1.2, target)
    assert result.accuracy == pytest.approx(margin_best)


def test_config_defaults_and_checks() -> None:
    config = EvolutionConfig()
    assert (config.population, config.generations, config.parents, config.mutants) == (100, 500, 25, 50)
    assert (config.mutation_probability, config.resolution_probability) == (0.1, 0.5)
    assert EvolutionConfig.for_space("compofa").generations == 50
    assert EvolutionConfig.for_space("compofa-proxyless").generations == 50
    assert EvolutionConfig.for_space("compofa-ek").generations == 300
    assert EvolutionConfig.for_space("ofa-mbv3", population=20).generations == 500
    for bad in ({"population": 0}, {"mutation_probability": 1.5}, {"patience": 0}, {"parent_ratio": 0.001}):
        with pytest.raises(ValueError, match="EvolutionConfig"):
            EvolutionConfig(**bad)  # type: ignore[arg-type]
