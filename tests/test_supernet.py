"""Contract of `Supernet`: extraction, scoped activation, family checks, BatchNorm behaviour.

Generated from the registry where it can be: every registered space runs the
same extraction test.
"""

from __future__ import annotations

import copy
import pickle
from typing import Callable, Iterator

import pytest
import torch
from torch import nn

from compofa.errors import SpecError
from compofa.space import get_space, list_spaces
from compofa.supernet import Subnet, Supernet
from compofa.supernet.bn import recalibrate_batchnorm
from compofa.supernet.elastic import ElasticBatchNorm
from conftest import PARITY_RESOLUTION, build_reference, generator, images, randomize_, sample_specs

SPACES = [space.name for space in list_spaces()]


def _supernet_for(space: str, random_supernet: Callable[..., Supernet]) -> Supernet:
    design = get_space(space)
    return random_supernet(design.family.name, design.family.default_width, design.kernel_transform)


def _small_supernet(seed: str) -> Supernet:
    """A fresh, randomized MobileNetV3 w1.0 supernet that a test may change."""
    return randomize_(Supernet("mobilenetv3", 1.0), generator("small", seed))


def _bn_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


# -- extraction ------------------------------------------------------------------------


@pytest.mark.parametrize("space", SPACES)
def test_subnet_matches_supernet(space: str, random_supernet: Callable[..., Supernet]) -> None:
    """For every registered space, subnet(spec)(x) equals supernet(x, spec) and has the spec's layers."""
    supernet = _supernet_for(space, random_supernet)
    x = images(2, PARITY_RESOLUTION)
    for spec in sample_specs(space, 3, seed=10):
        subnet = supernet.subnet(spec)
        assert isinstance(subnet, Subnet) and subnet.spec == spec and not subnet.training
        assert len(subnet.blocks) == 1 + sum(spec.depths)
        assert not any(isinstance(m, ElasticBatchNorm) for m in subnet.modules())
        with torch.no_grad():
            expected = supernet(x, spec)
            actual = subnet(x)
        assert float(expected.abs().max()) > 0.05
        assert float((actual - expected).abs().max()) <= 1e-5, str(spec)


def test_subnet_sizes_follow_the_spec(random_supernet: Callable[..., Supernet]) -> None:
    """A subnet's depthwise layers have the plan's widths and kernels; a smaller spec has fewer parameters."""
    supernet = random_supernet("mobilenetv3", 1.2, False)
    largest, smallest = sample_specs("compofa", 2)
    big, small = supernet.subnet(largest), supernet.subnet(smallest)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(small) < count(big) < count(supernet)
    # Middle widths come from the plan: make_divisible(round(C_in * e)).
    for block, plan in zip(small.blocks[1:], small.plan.blocks[1:]):
        assert block.conv.depth_conv.conv.weight.shape == (plan.mid_channels, 1, plan.kernel_size, plan.kernel_size)


def test_subnet_keeps_the_supernet_mode(random_supernet: Callable[..., Supernet]) -> None:
    """subnet() returns a module in the supernet's train/eval mode."""
    supernet = random_supernet("mobilenetv3", 1.2, False)
    spec = sample_specs("compofa", 3)[-1]
    try:
        supernet.train()
        assert supernet.subnet(spec).training
    finally:
        supernet.eval()
    assert not supernet.subnet(spec).training


def test_subnet_weights_are_copies() -> None:
    """Changing a subnet's tensors leaves the supernet alone, and the reverse."""
    supernet = _small_supernet("copies").eval()
    spec = sample_specs("ofa-mbv3", 3, seed=11)[-1]
    x = images(1, PARITY_RESOLUTION)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    subnet = supernet.subnet(spec)
    with torch.no_grad():
        reference_output = subnet(x)
        for tensor in subnet.state_dict().values():
            tensor.add_(1)
    after = supernet.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())

    fresh = supernet.subnet(spec)
    with torch.no_grad():
        fresh_before = fresh(x)
        assert torch.equal(fresh_before, reference_output)
        for parameter in supernet.parameters():
            parameter.mul_(2)
        assert torch.equal(fresh(x), fresh_before)


# -- scoped activation ----------------------------------------------------------------


def test_active_scopes_and_restores(random_supernet: Callable[..., Supernet]) -> None:
    """active(spec) makes supernet(x) run spec, nests, and restores the previous subnet, even on error."""
    supernet = random_supernet("mobilenetv3", 1.2, False)
    outer, inner = sample_specs("compofa", 4, seed=12)[2:]
    x = images(1, PARITY_RESOLUTION)
    with torch.no_grad():
        full = supernet(x)
        assert torch.equal(full, supernet(x, get_space("compofa-ek").largest()))  # default: the full network
        outer_logits, inner_logits = supernet(x, outer), supernet(x, inner)
        assert not torch.allclose(outer_logits, inner_logits)

        with supernet.active(outer) as scoped:
            assert scoped is supernet
            assert torch.equal(supernet(x), outer_logits)
            with supernet.active(inner):
                assert torch.equal(supernet(x), inner_logits)
                assert torch.equal(supernet(x, outer), outer_logits)  # an explicit spec wins
            assert torch.equal(supernet(x), outer_logits)
            with pytest.raises(RuntimeError, match="boom"):
                with supernet.active(inner):
                    raise RuntimeError("boom")
            assert torch.equal(supernet(x), outer_logits)
        assert torch.equal(supernet(x), full)


# -- family checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "width", "foreign_space"),
    [("mobilenetv3", 1.2, "compofa-proxyless"), ("proxylessnas", 1.3, "ofa-mbv3")],
)
def test_spec_of_another_family_raises(
    family: str, width: float, foreign_space: str, random_supernet: Callable[..., Supernet]
) -> None:
    """Running, extracting or activating a spec of another family raises SpecError naming both."""
    supernet = random_supernet(family, width, False)
    spec = sample_specs(foreign_space, 3)[-1]
    x = images(1, PARITY_RESOLUTION)
    calls: list[Callable[[], object]] = [
        lambda: supernet(x, spec),
        lambda: supernet.subnet(spec),
        lambda: supernet.subnet_state_dict(spec),
        lambda: supernet.plan(spec),
    ]
    for call in calls:
        with pytest.raises(SpecError, match=family):
            call()
    with pytest.raises(SpecError, match=foreign_space):
        with supernet.active(spec):
            pass  # pragma: no cover
    own_space = "ofa-mbv3" if family == "mobilenetv3" else "ofa-proxyless"
    with torch.no_grad():  # nothing was left active: a plain call runs the full network
        assert torch.equal(supernet(x), supernet(x, get_space(own_space).largest()))


def test_parameter_count_matches_reference() -> None:
    """Our supernets hold exactly as many parameters as the reference ones (MobileNetV3 w1.2, ProxylessNAS w1.3)."""
    for family, width in (("mobilenetv3", 1.2), ("proxylessnas", 1.3)):
        for transform in (True, False):
            reference = build_reference(family, width, transform)
            ours = Supernet(family, width, transform)
            expected = sum(p.numel() for p in reference.parameters())
            assert sum(p.numel() for p in ours.parameters()) == expected, (family, transform)
    assert expected > 0


def test_deepcopy_and_pickle_keep_working(random_supernet: Callable[..., Supernet]) -> None:
    """A deep copy (teacher / EMA copies) or pickled supernet still runs specs of its family."""
    supernet = random_supernet("mobilenetv3", 1.2, False)
    spec = sample_specs("compofa", 3)[-1]
    x = images(1, PARITY_RESOLUTION)
    with torch.no_grad():
        expected = supernet(x, spec)
        for clone in (copy.deepcopy(supernet), pickle.loads(pickle.dumps(supernet))):
            assert clone.family == supernet.family
            assert torch.equal(clone(x, spec), expected)



# -- BatchNorm recalibration ------------------------------------------------------------


def _batches(sizes: tuple[int, ...], seed: int = 0) -> list[torch.Tensor]:
    return [images(size, PARITY_RESOLUTION, seed=seed + i) for i, size in enumerate(sizes)]


def _record_batch_stats(model: nn.Module) -> tuple[dict[str, list[tuple[torch.Tensor, torch.Tensor]]], list]:
    """Hooks that record each BatchNorm's per-batch input mean and unbiased variance."""
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):

            def record(m: nn.Module, args: tuple[torch.Tensor, ...], name: str = name) -> None:
                x = args[0].detach()
                seen.setdefault(name, []).append((x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=True)))

            hooks.append(module.register_forward_pre_hook(record))
    return seen, hooks


def test_recalibration_averages_per_batch_statistics(random_supernet: Callable[..., Supernet]) -> None:
    """After recalibration each BatchNorm holds the plain average of the per-batch mean and variance."""
    subnet = random_supernet("mobilenetv3", 1.2, False).subnet(sample_specs("compofa", 3, seed=13)[-1])
    before = _bn_state(subnet)
    seen, hooks = _record_batch_stats(subnet)
    try:
        used = recalibrate_batchnorm(subnet, iter(_batches((2, 3, 1))))
    finally:
        for hook in hooks:
            hook.remove()
    assert used == 3
    norms = {n: m for n, m in subnet.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert set(seen) == set(norms) and all(len(v) == 3 for v in seen.values())
    for name, norm in norms.items():
        means = torch.stack([mean for mean, _ in seen[name]])
        variances = torch.stack([var for _, var in seen[name]])
        torch.testing.assert_close(norm.running_mean, means.mean(0), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(norm.running_var, variances.mean(0), rtol=1e-4, atol=1e-5)
        assert int(norm.num_batches_tracked) == 3
    assert not torch.allclose(before["first_conv.bn.running_mean"], subnet.first_conv.bn.running_mean)


def test_recalibration_honours_max_batches(random_supernet: Callable[..., Supernet]) -> None:
    """With max_batches, only the first batches are used (the rest of the iterable is not consumed)."""
    spec = sample_specs("compofa", 3, seed=13)[-1]
    supernet = random_supernet("mobilenetv3", 1.2, False)
    batches = _batches((2, 2, 2), seed=5)
    two, three = supernet.subnet(spec), supernet.subnet(spec)
    assert recalibrate_batchnorm(two, batches, max_batches=2) == 2
    assert recalibrate_batchnorm(three, batches[:2]) == 2
    assert all(torch.equal(a, b) for a, b in zip(two.state_dict().values(), three.state_dict().values()))


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_recalibration_restores_modes_and_momenta(mode: str, random_supernet: Callable[..., Supernet]) -> None:
    """The model's train/eval flags and BatchNorm momenta are restored; dropout is off while recalibrating."""
    subnet = random_supernet("mobilenetv3", 1.2, False).subnet(sample_specs("compofa", 3)[-1])
    subnet.train(mode == "train")
    subnet.first_conv.bn.momentum = 0.3
    flags = {name: m.training for name, m in subnet.named_modules()}
    dropout_flags: list[bool] = []
    assert subnet.classifier.dropout is not None
    hook = subnet.classifier.dropout.register_forward_pre_hook(lambda m, _: dropout_flags.append(m.training))
    try:
        recalibrate_batchnorm(subnet, _batches((2,)))
    finally:
        hook.remove()
    assert dropout_flags == [False]
    assert {name: m.training for name, m in subnet.named_modules()} == flags
    momenta = {name: m.momentum for name, m in subnet.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert momenta.pop("first_conv.bn") == 0.3
    assert momenta and all(momentum == 0.1 for momentum in momenta.values())


def test_recalibration_restores_modes_after_an_error(random_supernet: Callable[..., Supernet]) -> None:
    """A batch that fails mid-way still leaves modes and momenta as they were."""
    subnet = random_supernet("mobilenetv3", 1.2, False).subnet(sample_specs("compofa", 3)[-1]).eval()

    def batches() -> Iterator[torch.Tensor]:
        yield images(2, PARITY_RESOLUTION)
        yield torch.zeros(2, 5, PARITY_RESOLUTION, PARITY_RESOLUTION)  # wrong channel count

    with pytest.raises(RuntimeError):
        recalibrate_batchnorm(subnet, batches())
    assert not any(m.training for m in subnet.modules())
    assert all(m.momentum == 0.1 for m in subnet.modules() if isinstance(m, nn.BatchNorm2d))


def test_recalibration_without_batches_keeps_statistics(random_supernet: Callable[..., Supernet]) -> None:
    """An empty iterable raises ValueError and leaves the statistics and modes untouched."""
    subnet = random_supernet("mobilenetv3", 1.2, False).subnet(sample_specs("compofa", 3)[-1])
    before = _bn_state(subnet)
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_batchnorm(subnet, iter([]))
    after = _bn_state(subnet)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert not subnet.training


def test_recalibration_with_zero_max_batches_keeps_statistics(random_supernet: Callable[..., Supernet]) -> None:
    """max_batches=0 uses no data, so it must not throw the old statistics away."""
    subnet = random_supernet("mobilenetv3", 1.2, False).subnet(sample_specs("compofa", 3)[-1])
    before = _bn_state(subnet)
    try:
        recalibrate_batchnorm(subnet, _batches((2,)), max_batches=0)
    except ValueError:
        pass
    after = _bn_state(subnet)
    assert all(torch.equal(after[k], v) for k, v in before.items())


# -- training-mode BatchNorm ----------------------------------------------------------------


def test_training_forward_updates_only_the_sliced_statistics() -> None:
    """In training mode a subnet updates the first channels of each BatchNorm (momentum 0.1) and nothing else."""
    supernet = _small_supernet("training").train()
    spec = get_space("ofa-mbv3").smallest()  # depth 2, expand 3, kernel 3 everywhere
    block = supernet.blocks[1].conv  # first block of stage 1: 16 -> 24 channels at w1.0
    mid = supernet.plan(spec).blocks[1].mid_channels
    norm = block.inverted_bottleneck.bn
    assert mid == 48 and norm.num_features == 96
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    seen: list[torch.Tensor] = []
    hook = norm.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    try:
        supernet(images(4, PARITY_RESOLUTION), spec)
    finally:
        hook.remove()
    after = supernet.state_dict()

    batch_mean = seen[0].mean((0, 2, 3))
    batch_var = seen[0].var((0, 2, 3), unbiased=True)
    old_mean = before["blocks.1.conv.inverted_bottleneck.bn.running_mean"]
    old_var = before["blocks.1.conv.inverted_bottleneck.bn.running_var"]
    torch.testing.assert_close(norm.running_mean[:mid], 0.9 * old_mean[:mid] + 0.1 * batch_mean)
    torch.testing.assert_close(norm.running_var[:mid], 0.9 * old_var[:mid] + 0.1 * batch_var)
    assert torch.equal(norm.running_mean[mid:], old_mean[mid:])
    assert torch.equal(norm.running_var[mid:], old_var[mid:])
    assert int(norm.num_batches_tracked) == 1

    # Blocks beyond the stage's depth (positions 3 and 4) are untouched; weights never change.
    for key, value in before.items():
        untouched = key.startswith(("blocks.3.", "blocks.4.")) or "running" not in key and "num_batches" not in key
        if untouched:
            assert torch.equal(after[key], value), key
    key = "blocks.2.conv.depth_conv.bn.running_mean"
    assert not torch.equal(after[key], before[key])
