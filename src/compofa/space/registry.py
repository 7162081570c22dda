"""The registry of design spaces, and the five built-in ones.

| space               | family       | stage choices                               | subnets   |
|---------------------|--------------|---------------------------------------------|-----------|
| `ofa-mbv3`          | MobileNetV3  | d in {2,3,4}; k in {3,5,7}, e in {3,4,6}    | 7371^5    |
| `compofa`           | MobileNetV3  | d2/e3, d3/e4, d4/e6; k fixed 3,5,3,3,5      | 3^5 = 243 |
| `compofa-ek`        | MobileNetV3  | d2/e3, d3/e4, d4/e6; k in {3,5,7}           | 117^5     |
| `ofa-proxyless`     | ProxylessNAS | as ofa-mbv3; last stage 1 block, k and e    | 7371^5 * 9|
| `compofa-proxyless` | ProxylessNAS | coupled d/e, k = 3; last stage 1 block, e   | 3^5 * 3   |

CompOFA's coupling and fixed kernels are from paper section 4.1; its
ProxylessNAS variant (section 5.6) fixes every kernel to 3. The last
ProxylessNAS stage has a single block and so no depth to couple to: its expand
ratio stays elastic, as in OFA.
"""

from __future__ import annotations

from compofa.errors import UnknownSpaceError
from compofa.registry import Registry
from compofa.space.design import DesignSpace, StageChoices
from compofa.space.family import MOBILENET_V3, PROXYLESSNAS, Family
from compofa.space.spec import install_space_lookup

_SPACES: Registry[DesignSpace] = Registry("design space", UnknownSpaceError, "see `compofa spaces`")

DEPTHS = (2, 3, 4)
KERNELS = (3, 5, 7)
EXPANDS = (3, 4, 6)
# Paper section 4.1: the i-th depth goes with the i-th expand ratio.
COUPLING = tuple(zip(DEPTHS, EXPANDS))
# Paper section 4.1: kernels fixed per stage "to match MobileNetV3".
COMPOFA_KERNELS = (3, 5, 3, 3, 5)


def register_space(space: DesignSpace) -> DesignSpace:
    """Add `space` to the registry; a duplicate name is an error."""
    return _SPACES.register(space.name, space)


def get_space(name: str) -> DesignSpace:
    return _SPACES.get(name)


def list_spaces() -> tuple[DesignSpace, ...]:
    return _SPACES.values()


def unconstrained_space(family: Family) -> DesignSpace:
    """The registered space of `family` with the most subnets: OFA's, every choice free. Its largest
    subnet is the full network (the teacher), and every other space of the family is cut from it."""
    return max((s for s in _SPACES.values() if s.family == family), key=lambda s: s.cardinality)


def _ofa_stage(max_depth: int = 4) -> StageChoices:
    if max_depth == 1:
        return StageChoices((1,), KERNELS, EXPANDS)
    return StageChoices(DEPTHS, KERNELS, EXPANDS)


def _compofa_stage(kernels: tuple[int, ...]) -> StageChoices:
    return StageChoices(DEPTHS, kernels, EXPANDS, expand_for_depth=COUPLING)


register_space(
    DesignSpace(
        name="ofa-mbv3",
        family=MOBILENET_V3,
        stages=tuple(_ofa_stage() for _ in MOBILENET_V3.stages),
        description="Once-for-All MobileNetV3: kernel, expand ratio per block and depth per stage free",
        kernel_transform=True,
    )
)
register_space(
    DesignSpace(
        name="compofa",
        family=MOBILENET_V3,
        stages=tuple(_compofa_stage((kernel,)) for kernel in COMPOFA_KERNELS),
        description="CompOFA MobileNetV3: depth and expand ratio coupled per stage, kernels fixed 3,5,3,3,5",
        kernel_transform=False,
    )
)
register_space(
    DesignSpace(
        name="compofa-ek",
        family=MOBILENET_V3,
        stages=tuple(_compofa_stage(KERNELS) for _ in MOBILENET_V3.stages),
        description="CompOFA MobileNetV3 with elastic kernel: coupled depth/expand, kernel per block free",
        kernel_transform=False,
    )
)
register_space(
    DesignSpace(
        name="ofa-proxyless",
        family=PROXYLESSNAS,
        stages=tuple(_ofa_stage(stage.max_depth) for stage in PROXYLESSNAS.stages),
        description="Once-for-All ProxylessNAS: kernel, expand ratio per block and depth per stage free",
        kernel_transform=True,
    )
)
register_space(
    DesignSpace(
        name="compofa-proxyless",
        family=PROXYLESSNAS,
        stages=tuple(
            _compofa_stage((3,)) if stage.max_depth > 1 else StageChoices((1,), (3,), EXPANDS)
            for stage in PROXYLESSNAS.stages
        ),
        description="CompOFA ProxylessNAS: coupled depth/expand, kernel 3; last single block's expand free",
        kernel_transform=False,
    )
)


# Specs find their space through this registry (see `compofa.space.spec.install_space_lookup`).
install_space_lookup(get_space)
