"""The elastic supernet and the standalone subnets extracted from it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from compofa.errors import SpecError
from compofa.space import Family, SubnetSpec, get_family, get_space, make_divisible
from compofa.space.plan import LayerPlan, NetworkPlan, plan_subnet, plan_supernet
from compofa.supernet.elastic import (
    ElasticBlock,
    ElasticDepthwise,
    ElasticMBConv,
    ElasticPointwise,
    sort_middle_channels,
)
from compofa.supernet.layers import Block, Classifier, Device, MBConv, conv_from_plan


class _Network(nn.Module):
    """Stem and head shared by the supernet and its subnets."""

    def _build_ends(self, plan: NetworkPlan, device: Device = None) -> None:
        family = plan.family
        self.first_conv = conv_from_plan(plan.stem, device)
        self.final_expand_layer = conv_from_plan(plan.final_expand, device) if plan.final_expand else None
        self.feature_mix_layer = conv_from_plan(plan.feature_mix, device)
        self.classifier = Classifier(plan.classifier_in, plan.num_classes, family.dropout, device)
        self._mix_after_pool = family.feature_mix_after_pool
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps, module.momentum = family.bn_eps, family.bn_momentum

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        if self.final_expand_layer is not None:
            x = self.final_expand_layer(x)
        if self._mix_after_pool:  # MobileNetV3: pool, then a 1x1 "feature mix"
            x = self.feature_mix_layer(x.mean((2, 3), keepdim=True))
        else:  # ProxylessNAS: mix at full resolution, then pool
            x = self.feature_mix_layer(x).mean((2, 3), keepdim=True)
        return self.classifier(torch.flatten(x, 1))


class Subnet(_Network):
    """A standalone subnet: plain layers with their own copy of the weights.

    Attributes:
        spec: the subnet it is.
        plan: its layer-by-layer plan (channels, kernels, strides).
    """

    def __init__(self, spec: SubnetSpec, width: float, device: Device = None) -> None:
        super().__init__()
        self.spec = spec
        self.width = width
        self.plan = plan_subnet(spec, width)
        self.blocks = nn.ModuleList(Block(MBConv(block, device), block.residual) for block in self.plan.blocks)
        self._build_ends(self.plan, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for block in self.blocks:
            x = block(x)
        return self._head(x)


class _Pool(nn.Module):
    """Global average pooling, kept 4-D (the MobileNetV3 head pools before its 1x1 feature mix)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


class _Classify(nn.Module):
    """The classifier on a pooled (or, ProxylessNAS, first pooled here) feature map."""

    def __init__(self, classifier: Classifier, pool_first: bool) -> None:
        super().__init__()
        self.classifier, self.pool_first = classifier, pool_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_first:
            x = x.mean((2, 3), keepdim=True)
        return self.classifier(torch.flatten(x, 1))


def _block_module(subnet: Subnet, layer: LayerPlan) -> nn.Module:
    # The stem is layer 0 and the blocks follow in order, so block i of the subnet is layer i + 1.
    return subnet.blocks[layer.index - 1]


def _present(module: nn.Module | None, kind: str) -> nn.Module:
    assert module is not None, f"a subnet with a {kind} layer has its module"
    return module


#: The PyTorch module of each `LayerPlan.kind` (every kind of `compofa.space.plan.LAYER_KINDS`), as
#: `compofa.graphs.onnx_graph.LAYER_WRITERS` writes its graph.
LAYER_MODULES: dict[str, Callable[[Subnet, LayerPlan], nn.Module]] = {
    "stem": lambda subnet, layer: subnet.first_conv,
    "block": _block_module,
    "final_expand": lambda subnet, layer: _present(subnet.final_expand_layer, "final_expand"),
    "pool": lambda subnet, layer: _Pool(),
    "feature_mix": lambda subnet, layer: subnet.feature_mix_layer,
    "classifier": lambda subnet, layer: _Classify(subnet.classifier, pool_first=False),
    "pool_classifier": lambda subnet, layer: _Classify(subnet.classifier, pool_first=True),
}


def layer_modules(subnet: Subnet) -> list[nn.Module]:
    """`subnet`'s layers in execution order, one per layer of `subnet.plan.layers` (the split OFA's
    lookup tables key, and the one `compofa.graphs.onnx_graph.build_layer_model` writes).
    Chained, they compute `subnet(x)`."""
    return [LAYER_MODULES[layer.kind](subnet, layer) for layer in subnet.plan.layers]


class Supernet(_Network):
    """An OFA-style elastic supernet of one family at one width multiplier.

    Args:
        family: a `Family` or its registry name (``mobilenetv3``,
            ``proxylessnas``).
        width: width multiplier (default: the family's, 1.2 for MobileNetV3).
        kernel_transform: use OFA's learned 7->5->3 kernel transform matrices
            (OFA checkpoints) or plain centre crops (CompOFA checkpoints).

    Run a subnet with ``supernet(x, spec)``; `subnet(spec)` returns it as a
    standalone module with copied weights and the same outputs.
    """

    def __init__(
        self, family: Family | str = "mobilenetv3", width: float | None = None, kernel_transform: bool = False
    ) -> None:
        super().__init__()
        self.family = get_family(family) if isinstance(family, str) else family
        self.width = float(self.family.default_width if width is None else width)
        self.kernel_transform = kernel_transform
        plan = self._full_plan = plan_supernet(self.family, self.width)
        first = plan.blocks[0]
        blocks: list[nn.Module] = [Block(MBConv(first), first.residual)]
        for block in plan.blocks[1:]:
            conv = ElasticMBConv(block, self.family.kernel_sizes, kernel_transform)
            blocks.append(ElasticBlock(conv, block.residual))
        self.blocks = nn.ModuleList(blocks)
        self._build_ends(plan)
        self._active: SubnetSpec | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """OFA's "he_fout" initialisation: Kaiming-normal convs (fan-out), unit BatchNorm,
        uniform linear weights of bound 1/sqrt(in_features) and zero biases."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, ElasticPointwise, ElasticDepthwise)):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out")
                    bias = getattr(module, "bias", None)
                    if bias is not None:
                        bias.zero_()
                elif isinstance(module, nn.BatchNorm2d):
                    module.reset_parameters()
                elif isinstance(module, nn.Linear):
                    bound = 1.0 / module.weight.shape[1] ** 0.5
                    module.weight.uniform_(-bound, bound)
                    module.bias.zero_()

    @classmethod
    def for_space(cls, space: str, width: float | None = None, kernel_transform: bool | None = None) -> Supernet:
        """A supernet for `space`, with the space's kernel-transform default."""
        design = get_space(space)
        transform = design.kernel_transform if kernel_transform is None else kernel_transform
        return cls(design.family, width, transform)

    def __repr__(self) -> str:
        transform = "on" if self.kernel_transform else "off"
        return f"Supernet({self.family.name}, width={self.width:g}, kernel_transform={transform})"

    # -- running subnets -----------------------------------------------------------

    def plan(self, spec: SubnetSpec) -> NetworkPlan:
        """The plan of `spec` on this supernet; a spec of another family is an error."""
        family = get_space(spec.space).family
        if family != self.family:  # by value: copies and pickles hold equal copies
            raise SpecError(
                f"spec of space {spec.space!r} ({family.name}) cannot run on a {self.family.name} supernet"
            )
        return plan_subnet(spec, self.width)

    def forward(self, x: torch.Tensor, spec: SubnetSpec | None = None) -> torch.Tensor:
        """Logits of subnet `spec` (default: the active one, else the full network)."""
        spec = spec or self._active
        plan = self.plan(spec) if spec is not None else self._full_plan
        x = self.first_conv(x)
        x = self.blocks[0](x)
        for block in plan.blocks[1:]:
            x = self.blocks[block.position](x, block)
        return self._head(x)

    @contextlib.contextmanager
    def active(self, spec: SubnetSpec) -> Iterator[Supernet]:
        """Make `spec` the subnet a plain ``supernet(x)`` runs (for wrappers such as DDP)."""
        self.plan(spec)
        previous, self._active = self._active, spec
        try:
            yield self
        finally:
            self._active = previous

    def sort_middle_channels(self, keep_expand_ratios: tuple[int, ...] = ()) -> None:
        """Re-sort every elastic block's middle channels by importance (OFA, before elastic width).

        Channels inside the width of each ratio in `keep_expand_ratios` stay
        inside it, as OFA's second width phase keeps the channels the first
        one trained.
        """
        for block in self._full_plan.blocks[1:]:
            ends = tuple(sorted(make_divisible(round(block.in_channels * e)) for e in keep_expand_ratios))
            sort_middle_channels(self._elastic(block.position), ends)

    def _elastic(self, position: int) -> ElasticMBConv:
        block = self.blocks[position]
        assert isinstance(block, ElasticBlock), f"block {position} of a supernet is elastic"
        return block.conv

    # -- extraction ------------------------------------------------------------------

    def subnet_state_dict(self, spec: SubnetSpec, copy: bool = True) -> dict[str, torch.Tensor]:
        """The weights of `spec` under the names of a `Subnet`.

        With `copy`, fresh contiguous tensors; without, views into the
        supernet's weights (for readers such as the ONNX builder).
        """
        plan = self.plan(spec)
        state: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name, tensor in self.state_dict().items():
                if not name.startswith("blocks."):
                    state[name] = tensor
            for index, block in enumerate(plan.blocks):
                if block.position == 0:
                    first = self.blocks[0]
                    assert isinstance(first, Block), "the first block is fixed"
                    block_state = first.conv.state_dict()
                else:
                    block_state = self._elastic(block.position).active_state(block)
                state |= {f"blocks.{index}.conv.{name}": tensor for name, tensor in block_state.items()}
            if not copy:
                return state
            contiguous = torch.contiguous_format
            return {name: tensor.detach().clone(memory_format=contiguous) for name, tensor in state.items()}

    def subnet(self, spec: SubnetSpec) -> Subnet:
        """Subnet `spec` as a standalone module (same mode and device as this one)."""
        state = self.subnet_state_dict(spec)
        # Built as shells on the meta device, then given the copied tensors:
        # no memory or initialisation is spent on weights about to be replaced.
        module = Subnet(spec, self.width, device="meta")
        module.load_state_dict(state, assign=True)
        return module.train(self.training)
