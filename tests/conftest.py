"""Shared fixtures: randomized reference (OFA) networks and supernets, specs, images.

Building and randomizing a supernet takes a fraction of a second, so every
network is built once per session (keyed by family, width, kernel transform and
calibration resolution) and shared read-only; a test that changes weights or
running statistics builds its own (or, for a reference network, deep-copies one).

About the random weights (`randomize_`): with the plain distributions alone
(He-normal convs, BatchNorm running stats unrelated to the activations), the
signal fades through the ~60 layers of a MobileNetV3 (eval-mode BatchNorm
shrinks it, h-swish has slope 1/2 near zero, SE gates halve it): the logits end
up O(0.5) but nearly constant, and scaling an early depthwise kernel by 1%
moved them by ~1e-6, below the 1e-5 tolerance of the parity tests. So the
running statistics are *calibrated* on one random batch through the full
network, as a trained network's would be: running_mean = the channel's mean +
N(0, 0.1) * s, running_var = s^2 * U(0.5, 1.5), with s^2 the layer's mean
activation variance; the classifier is scaled to unit-variance logits. The
logits are then O(1) and a 10% change of the first elastic kernel moves them by
1e-3..0.4 (pinned by
`test_reference_parity.py::test_random_weights_make_parity_meaningful`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import zlib
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, TypeVar

import numpy as np
import pytest
import torch
from torch import nn

from compofa.space import SubnetSpec, get_space
from compofa.supernet import Supernet

if TYPE_CHECKING:
    from sshd import SshServer

#: Input side used by the parity tests (small: fast, and what networks are calibrated at).
PARITY_RESOLUTION = 64
#: Input side of the ONNX tests.
ONNX_RESOLUTION = 128
#: Pixels per channel (batch x height x width) of the batch that sets the
#: BatchNorm statistics of a random network: 32 images of 64 x 64.
CALIBRATION_PIXELS = 32 * 64 * 64

#: Every (space, width) whose supernet the reference package can build.
REFERENCE_CASES: tuple[tuple[str, float], ...] = (
    ("ofa-mbv3", 1.2),
    ("compofa", 1.2),
    ("compofa-ek", 1.2),
    ("ofa-mbv3", 1.0),
    ("compofa", 1.0),
    ("compofa-ek", 1.0),
    ("ofa-proxyless", 1.3),
    ("compofa-proxyless", 1.3),
)


def _seed(*parts: object) -> int:
    """A stable seed from a key (Python's hash() of str is salted per process)."""
    return zlib.crc32(repr(parts).encode())


def generator(*key: object) -> torch.Generator:
    """A torch generator seeded from `key`."""
    return torch.Generator().manual_seed(_seed(*key))


def images(batch: int, resolution: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A fixed batch of N(0, 1) "images" (the same values in every dtype)."""
    x = torch.randn(batch, 3, resolution, resolution, generator=generator("images", batch, resolution, seed))
    return x.to(dtype)


def sample_specs(space: str, count: int, seed: int = 0, resolution: int | None = None) -> list[SubnetSpec]:
    """The largest and smallest subnet of `space`, then `count - 2` random ones."""
    design = get_space(space)
    rng = np.random.default_rng(_seed("specs", space, seed))
    fixed_resolution = [resolution] if resolution is not None else None
    specs = [design.largest(resolution), design.smallest(resolution)]
    specs += design.sample_many(rng, max(0, count - 2), fixed_resolution)
    return specs[:count]


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def randomize_(module: ModuleT, generator: torch.Generator, resolution: int | None = PARITY_RESOLUTION) -> ModuleT:
    """Fill every floating tensor of `module`'s state_dict with random values, in place.

    BatchNorm weight U(0.5, 1.0), bias N(0, 0.1); kernel-transform matrices
    identity + 0.1 N(0, 1); other biases N(0, 0.1); other weights
    N(0, sqrt(2 / fan_in)). Running statistics: with `resolution`, calibrated on
    one batch of images of that size through the module's plain forward (which
    must run the full network: true of a `Supernet` and of a freshly built OFA
    network), and the classifier is scaled to give that batch unit-variance
    logits; without, running_mean N(0, 0.1) and running_var U(0.5, 1.5). See the
    module docstring for why calibration is needed. Returns `module`, in eval mode.
    """
    norms = {name: m for name, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    with torch.no_grad():
        for key, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            owner, _, leaf = key.rpartition(".")
            shape = tensor.shape
            if leaf == "running_var":
                value = torch.rand(shape, generator=generator) + 0.5
            elif leaf == "running_mean":
                value = torch.randn(shape, generator=generator) * 0.1
            elif owner in norms and leaf == "weight":
                value = torch.rand(shape, generator=generator) * 0.5 + 0.5
            elif owner in norms and leaf == "bias":
                value = torch.randn(shape, generator=generator) * 0.1
            elif leaf.endswith("_matrix"):
                value = torch.eye(shape[0]) + 0.1 * torch.randn(shape, generator=generator)
            elif tensor.dim() == 1:
                value = torch.randn(shape, generator=generator) * 0.1
            else:
                value = torch.randn(shape, generator=generator) * math.sqrt(2.0 / tensor[0].numel())
            tensor.copy_(value)
    module.eval()
    if resolution is not None:
        _calibrate_running_stats(module, norms.values(), generator, resolution)
    return module


def _calibrate_running_stats(
    module: nn.Module, norms: Iterable[nn.Module], generator: torch.Generator, resolution: int
) -> None:
    """Set each BatchNorm's statistics from its actual input, layer after layer, in one pass."""

    def calibrate(norm: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0]
        # One variance per layer, not per channel: deep stages see few pixels per
        # channel, and a channel whose small sample happened to be flat would be
        # amplified without bound on other inputs.
        scale = float(x.var((0, 2, 3)).mean()) + 1e-3
        shape = norm.running_mean.shape
        norm.running_mean.copy_(x.mean((0, 2, 3)) + 0.1 * scale**0.5 * torch.randn(shape, generator=generator))
        norm.running_var.copy_(scale * (torch.rand(shape, generator=generator) + 0.5))

    classifier = [m for m in module.modules() if isinstance(m, nn.Linear)][-1]
    features: list[torch.Tensor] = []
    hooks = [norm.register_forward_pre_hook(calibrate) for norm in norms]
    hooks.append(classifier.register_forward_pre_hook(lambda _, args: features.append(args[0])))
    try:
        with torch.no_grad():
            batch = max(4, CALIBRATION_PIXELS // resolution**2)
            module(torch.randn(batch, 3, resolution, resolution, generator=generator))
            # Unit-variance logits (before the bias) on the calibration batch.
            classifier.weight /= (features[-1] @ classifier.weight.T).std()
    finally:
        for hook in hooks:
            hook.remove()


# -- the reference package ------------------------------------------------------------


@contextlib.contextmanager
def kernel_transform_mode(enabled: bool) -> Iterator[None]:
    """Set the reference's class-level kernel-transform switch, and restore it."""
    from ofa.imagenet_classification.elastic_nn.modules.dynamic_op import DynamicSeparableConv2d

    previous = DynamicSeparableConv2d.KERNEL_TRANSFORM_MODE
    DynamicSeparableConv2d.KERNEL_TRANSFORM_MODE = 1 if enabled else None
    try:
        yield
    finally:
        DynamicSeparableConv2d.KERNEL_TRANSFORM_MODE = previous


def set_reference_transform(monkeypatch: pytest.MonkeyPatch, enabled: bool) -> None:
    """Switch the reference's kernel transform for the rest of one test."""
    from ofa.imagenet_classification.elastic_nn.modules.dynamic_op import DynamicSeparableConv2d

    monkeypatch.setattr(DynamicSeparableConv2d, "KERNEL_TRANSFORM_MODE", 1 if enabled else None)


def build_reference(family: str, width: float, transform: bool) -> nn.Module:
    """An OFA reference supernet (default init), built with the transform on or off, in eval mode."""
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3, OFAProxylessNASNets

    cls = {"mobilenetv3": OFAMobileNetV3, "proxylessnas": OFAProxylessNASNets}[family]
    with kernel_transform_mode(transform):  # read at construction: whether the matrices exist
        return cls(width_mult=width, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]).eval()


def reference_logits(reference: nn.Module, spec: SubnetSpec, x: torch.Tensor) -> torch.Tensor:
    """Logits of `spec` on the reference (whose transform switch the caller has set)."""
    d = spec.to_ofa_dict()
    reference.set_active_subnet(ks=d["ks"], e=d["e"], d=d["d"])
    with torch.no_grad():
        return reference(x)


def family_of(space: str) -> str:
    """The registry name of the family behind `space`."""
    return get_space(space).family.name


@pytest.fixture(scope="session")
def reference_net() -> Callable[..., nn.Module]:
    """Factory: the randomized, calibrated reference network of (family, width, built with transform, dtype).

    Shared by the whole session: set its active subnet before every use and do not change its weights.
    """
    cache: dict[tuple[str, float, bool, torch.dtype], nn.Module] = {}

    def get(family: str, width: float, transform: bool, dtype: torch.dtype = torch.float32) -> nn.Module:
        key = (family, width, transform, dtype)
        if key not in cache:
            if dtype == torch.float32:
                reference = build_reference(family, width, transform)
                cache[key] = randomize_(reference, generator("reference", family, width, transform))
            else:  # the same weights, converted exactly
                cache[key] = copy.deepcopy(get(family, width, transform)).to(dtype)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def random_supernet() -> Callable[..., Supernet]:
    """Factory: a randomized, calibrated `Supernet` of (family, width, kernel_transform, resolution).

    Shared by the whole session: do not change it (build a fresh one and load its state_dict).
    """
    cache: dict[tuple[str, float, bool, int], Supernet] = {}

    def get(family: str, width: float, kernel_transform: bool, resolution: int = PARITY_RESOLUTION) -> Supernet:
        key = (family, float(width), kernel_transform, resolution)
        if key not in cache:
            supernet = Supernet(family, width, kernel_transform)
            cache[key] = randomize_(supernet, generator("supernet", *key), resolution)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator["SshServer"]:
    """One real OpenSSH server on 127.0.0.1 for the whole session (tests/sshd.py)."""
    from sshd import MISSING, SshServer

    if MISSING is not None:
        pytest.skip(MISSING)
    running = SshServer.start(tmp_path_factory.mktemp("sshd"))
    yield running
    running.stop()


@pytest.fixture()
def ssh(ssh_server: "SshServer", monkeypatch: pytest.MonkeyPatch) -> "SshServer":
    """The test server, with this test's ssh (and the agents it starts) using its client config."""
    import shlex

    monkeypatch.setenv("COMPOFA_SSH_COMMAND", shlex.join(["ssh", "-F", str(ssh_server.ssh_config)]))
    return ssh_server
