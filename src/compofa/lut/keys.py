"""The OFA layer-key grammar: one key per `LayerPlan` of a network.

A key names a layer by its type, input and output shapes (``HxWxC``, or the
class count for the logits) and, for a block, its configuration:
``<type>-input:HxWxC-output:HxWxC|N[-field:int]...``. Keys are derived from
`NetworkPlan.layers` (the one split of a network into layers), so a layer's key
is exactly the layer the graphs and the PyTorch modules build. The grammar of
each family is that of OFA's MBv3LatencyTable and ProxylessNASLatencyTable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from compofa.lut.format import LutError
from compofa.space import Family
from compofa.space.plan import BlockPlan, LayerPlan, NetworkPlan

BlockFields = Callable[[BlockPlan], tuple[tuple[str, int], ...]]


@dataclass(frozen=True)
class KeyGrammar:
    """How one family names its layers.

    Attributes:
        layer_types: the key's type word for each `LayerPlan.kind` the family has.
        block_fields: the ``name:value`` fields of a block's key, in order.
    """

    layer_types: Mapping[str, str]
    block_fields: BlockFields

    def key(self, layer: LayerPlan) -> str:
        """The key of one layer."""
        fields: tuple[tuple[str, int], ...] = ()
        if layer.kind == "block":
            assert layer.block is not None, "a block layer carries its block"
            fields = self.block_fields(layer.block)
        parts = [self.layer_types[layer.kind], f"input:{_shape(layer.input_shape)}",
                 f"output:{_shape(layer.output_shape)}"]
        return "-".join(parts + [f"{name}:{value}" for name, value in fields])


def _shape(shape: tuple[int, ...]) -> str:
    """``(C, H, W)`` as OFA writes it, ``HxWxC``; a flat output (the logits) as its size."""
    if len(shape) == 3:
        channels, height, width = shape
        return f"{height}x{width}x{channels}"
    return "x".join(map(str, shape))


def _mobilenetv3_block(block: BlockPlan) -> tuple[tuple[str, int], ...]:
    # OFA's MBv3LatencyTable: `expand` is the middle channel count.
    return (("expand", block.mid_channels), ("kernel", block.kernel_size), ("stride", block.stride),
            ("idskip", int(block.residual)), ("se", int(block.use_se)), ("hs", int(block.activation == "h_swish")))


def _proxylessnas_block(block: BlockPlan) -> tuple[tuple[str, int], ...]:
    # OFA's ProxylessNASLatencyTable: `expand` is the expand *ratio* (1 for the first block), no se/hs.
    return (("expand", block.expand_ratio), ("kernel", block.kernel_size), ("stride", block.stride),
            ("idskip", int(block.residual)))


#: Key grammar of each family, by family name. MobileNetV3's head is Conv_1 (final expand),
#: AvgPool2D, Conv_2 (feature mix), Logits; ProxylessNAS's Conv_1 is the feature mix at full
#: spatial size and its Logits covers pooling and classifier.
KEY_GRAMMARS: Mapping[str, KeyGrammar] = MappingProxyType({
    "mobilenetv3": KeyGrammar(
        MappingProxyType({"stem": "Conv", "block": "expanded_conv", "final_expand": "Conv_1", "pool": "AvgPool2D",
                          "feature_mix": "Conv_2", "classifier": "Logits"}),
        _mobilenetv3_block,
    ),
    "proxylessnas": KeyGrammar(
        MappingProxyType({"stem": "Conv", "block": "expanded_conv", "feature_mix": "Conv_1",
                          "pool_classifier": "Logits"}),
        _proxylessnas_block,
    ),
})


def key_grammar(family: Family) -> KeyGrammar:
    """The grammar of `family`; an error names the families that have one."""
    try:
        return KEY_GRAMMARS[family.name]
    except KeyError:
        raise LutError(f"no LUT key grammar for the {family.name} family; known: {', '.join(KEY_GRAMMARS)}") from None


def layer_key(plan: NetworkPlan, layer: LayerPlan) -> str:
    """The key of `layer`, one of `plan.layers`."""
    return key_grammar(plan.family).key(layer)


def layer_keys(plan: NetworkPlan) -> tuple[str, ...]:
    """The LUT keys of every layer of `plan`, in execution order (index i is `plan.layers[i]`)."""
    grammar = key_grammar(plan.family)
    return tuple(grammar.key(layer) for layer in plan.layers)
