"""Build a subnet's ONNX graph directly from its plan and weights, without torch.

Tracing a PyTorch module per subnet costs about half a second; the networks of
a family are so regular that the graph can be written out from the
`NetworkPlan` instead, in milliseconds. The graph is written layer by layer
from `NetworkPlan.layers` (one writer per `LayerPlan.kind`, `LAYER_WRITERS`),
so a one-layer graph is exactly that layer of the whole network.

Weights come from a `Weights` callable that hands over each `Parameter`'s
arrays with BatchNorm already folded into the conv (as exporters do in eval
mode), so the graph holds only Conv, activation, pooling, Mul/Add and one
Gemm: `StateDictWeights` folds a subnet's state_dict (a checkpoint), and
`compofa.graphs.seeded.SeededWeights` draws seeded arrays (no supernet at all).
A parity test checks the outputs against the PyTorch subnet on every design
space.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import IO, Any, Protocol

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compofa.graphs import moments
from compofa.graphs.interface import INPUT_NAME, LAYER_OUTPUT_NAME, OPSET, OUTPUT_NAME
from compofa.space.plan import BlockPlan, ConvPlan, LayerPlan, NetworkPlan, plan_supernet


@dataclass(frozen=True)
class Parameter:
    """One weighted operation of a graph (a conv, or the classifier's matrix) and what decides its values.

    Attributes:
        name: the stem of its initializers' names (``<name>.w``, ``<name>.b``).
            Names say what determines the values within one supernet (a
            block's position and shapes, not its index in this subnet), so the
            same name means the same bytes in every subnet's graph, which lets
            the export cache store each array once.
        shape: ``(out, in / groups, k, k)`` for a conv, ``(out, in)`` for the classifier.
        weight_key: where a `Subnet`'s state_dict keeps the weight.
        bn_key: the state_dict prefix of the BatchNorm folded into it, if any.
        bias_key: where the state_dict keeps its own bias, if any (squeeze-excite, classifier).
        input_moment: the second moment of its input, and
        output_moment: the one its output should have, in a network whose
            every conv output has a set spread, as BatchNorm gives it in a
            trained network (`compofa.graphs.moments`); seeded weights are
            scaled by them.
    """

    name: str
    shape: tuple[int, ...]
    weight_key: str
    bn_key: str | None = None
    bias_key: str | None = None
    input_moment: float = 1.0
    output_moment: float = 1.0

    @property
    def has_bias(self) -> bool:
        """A folded BatchNorm leaves a bias, as does a bias of its own."""
        return self.bn_key is not None or self.bias_key is not None

    @property
    def fan_in(self) -> int:
        return math.prod(self.shape[1:])


class Weights(Protocol):
    """Hands the graph writer the arrays of each parameter."""

    def __call__(self, parameter: Parameter, /) -> tuple[np.ndarray, np.ndarray | None]:
        """The weight (float32, `parameter.shape`) and the bias (None exactly when not `parameter.has_bias`),
        BatchNorm folded in."""
        ...


class StateDictWeights:
    """The weights of a subnet's state_dict (numpy arrays under a `Subnet`'s names), BatchNorm folded in."""

    def __init__(self, state: Mapping[str, np.ndarray], bn_eps: float) -> None:
        self.state = state
        self.bn_eps = bn_eps

    def __call__(self, parameter: Parameter, /) -> tuple[np.ndarray, np.ndarray | None]:
        weight = self.state[parameter.weight_key]
        if tuple(weight.shape) != parameter.shape:
            raise ValueError(f"{parameter.weight_key} has shape {weight.shape}; the plan needs {parameter.shape}")
        offset = self.state[parameter.bias_key] if parameter.bias_key else None
        if parameter.bn_key:
            bn = parameter.bn_key
            # Per-channel factors in float64; the big tensor is scaled once in float32.
            variance = self.state[f"{bn}.running_var"].astype(np.float64)
            scale = self.state[f"{bn}.weight"] / np.sqrt(variance + self.bn_eps)
            shift = self.state[f"{bn}.bias"] - self.state[f"{bn}.running_mean"] * scale
            weight = weight * scale.astype(np.float32).reshape(-1, *(1,) * (weight.ndim - 1))
            offset = shift if offset is None else offset * scale + shift
        return weight, offset


class _GraphWriter:
    """Accumulates nodes and initializers under unique names."""

    def __init__(self, weights: Weights) -> None:
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[tuple[str, np.ndarray]] = []

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append((name, np.ascontiguousarray(value, dtype="<f4")))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def parameter(self, parameter: Parameter) -> list[str]:
        """The initializer names of `parameter`'s weight and bias, added from `weights`."""
        weight, bias = self.weights(parameter)
        if (bias is None) == parameter.has_bias:
            raise ValueError(f"{parameter.name} {'needs' if parameter.has_bias else 'has no'} bias")
        names = [self.constant(f"{parameter.name}.w", weight)]
        if bias is not None:
            names.append(self.constant(f"{parameter.name}.b", bias))
        return names

    def activation(self, x: str, kind: str | None, name: str) -> str:
        if kind is None:
            return x
        if kind == "relu":
            return self.node("Relu", [x], f"{name}.relu")
        if kind == "relu6":
            bounds = [self.constant(f"{name}.min", np.array(0.0)), self.constant(f"{name}.max", np.array(6.0))]
            return self.node("Clip", [x, *bounds], f"{name}.relu6")
        if kind == "h_swish":
            return self.node("HardSwish", [x], f"{name}.hswish")
        raise ValueError(f"unknown activation {kind!r}")

    def conv(self, x: str, name: str, parameter: Parameter, stride: int = 1, groups: int = 1) -> str:
        """A 'same'-padded conv of `parameter` (a square kernel), its node named after `name`."""
        kernel_size = parameter.shape[-1]
        pad = kernel_size // 2
        return self.node(
            "Conv",
            [x, *self.parameter(parameter)],
            f"{name}.conv",
            kernel_shape=[kernel_size, kernel_size],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
            group=groups,
        )

    def plain_conv(self, x: str, prefix: str, plan: ConvPlan, moment: float) -> str:
        """A conv stored as `prefix`.conv.weight with its BatchNorm (if any) at `prefix`.bn, then its activation."""
        parameter = Parameter(
            prefix,
            (plan.out_channels, plan.in_channels, plan.kernel_size, plan.kernel_size),
            f"{prefix}.conv.weight",
            bn_key=f"{prefix}.bn" if plan.batch_norm else None,
            input_moment=moment,
            output_moment=moments.pre_activation(plan.activation),
        )
        return self.activation(self.conv(x, prefix, parameter, plan.stride), plan.activation, prefix)

    def block(self, x: str, index: int, plan: BlockPlan, moment: float) -> str:
        """Block `index` of the subnet (its state_dict prefix), laid out by `plan`, reading second moment `moment`."""
        prefix = f"blocks.{index}.conv"
        weights = (
            f"block{plan.position}.in{plan.in_channels}.mid{plan.mid_channels}"
            f".out{plan.out_channels}.k{plan.kernel_size}"
        )
        mid, k = plan.mid_channels, plan.kernel_size
        y, activated = x, moments.activated(plan.activation)
        if plan.has_expand_conv:
            expand = Parameter(f"{weights}.inverted_bottleneck", (mid, plan.in_channels, 1, 1),
                               f"{prefix}.inverted_bottleneck.conv.weight", f"{prefix}.inverted_bottleneck.bn",
                               input_moment=moment, output_moment=moments.pre_activation(plan.activation))
            y = self.activation(self.conv(y, f"{prefix}.inverted_bottleneck", expand), plan.activation, f"{prefix}.ib")
            moment = activated
        depthwise = Parameter(f"{weights}.depth_conv", (mid, 1, k, k), f"{prefix}.depth_conv.conv.weight",
                              f"{prefix}.depth_conv.bn", input_moment=moment,
                              output_moment=moments.pre_activation(plan.activation))
        y = self.conv(y, f"{prefix}.depth_conv", depthwise, plan.stride, mid)
        y = self.activation(y, plan.activation, f"{prefix}.dw")
        if plan.use_se:
            y = self.squeeze_excite(y, f"{prefix}.depth_conv.se", f"{weights}.se", plan)
        project = Parameter(f"{weights}.point_linear", (plan.out_channels, mid, 1, 1),
                            f"{prefix}.point_linear.conv.weight", f"{prefix}.point_linear.bn",
                            input_moment=activated * (moments.GATE_MOMENT if plan.use_se else 1.0))
        y = self.conv(y, f"{prefix}.point_linear", project)
        return self.node("Add", [y, x], f"{prefix}.add") if plan.residual else y

    def squeeze_excite(self, x: str, prefix: str, weights: str, plan: BlockPlan) -> str:
        mid, se = plan.mid_channels, plan.se_channels
        pooled = self.node("GlobalAveragePool", [x], f"{prefix}.pool")
        reduce = Parameter(f"{weights}.reduce", (se, mid, 1, 1), f"{prefix}.fc.reduce.weight",
                           bias_key=f"{prefix}.fc.reduce.bias", input_moment=moments.activated(plan.activation))
        relu = self.node("Relu", [self.conv(pooled, f"{prefix}.reduce", reduce)], f"{prefix}.relu")
        expand = Parameter(f"{weights}.expand", (mid, se, 1, 1), f"{prefix}.fc.expand.weight",
                           bias_key=f"{prefix}.fc.expand.bias", input_moment=moments.activated("relu"))
        expanded = self.conv(relu, f"{prefix}.expand", expand)
        # h_sigmoid(x) = relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)
        gate = self.node("HardSigmoid", [expanded], f"{prefix}.gate", alpha=1.0 / 6.0, beta=0.5)
        return self.node("Mul", [x, gate], f"{prefix}.mul")

    def classifier(self, x: str, in_features: int, classes: int, moment: float) -> str:
        flat = self.node("Flatten", [x], "flatten", axis=1)
        parameter = Parameter("classifier", (classes, in_features), "classifier.linear.weight",
                              bias_key="classifier.linear.bias", input_moment=moment)
        return self.node("Gemm", [flat, *self.parameter(parameter)], "classifier", transB=1)


# -- one writer per LayerPlan.kind ---------------------------------------------------------------

#: Writes one layer: (writer, input name, layer, its input's second moment (`layer_input_moments`)) -> output name.
LayerWriter = Callable[[_GraphWriter, str, LayerPlan, float], str]


def _conv_of(layer: LayerPlan) -> ConvPlan:
    assert layer.conv is not None, f"a {layer.kind} layer carries its conv"
    return layer.conv


def _write_stem(writer: _GraphWriter, x: str, layer: LayerPlan, moment: float) -> str:
    return writer.plain_conv(x, "first_conv", _conv_of(layer), moment)


def _write_block(writer: _GraphWriter, x: str, layer: LayerPlan, moment: float) -> str:
    assert layer.block is not None, "a block layer carries its block"
    # The stem is layer 0 and the blocks follow in order, so block i of the subnet is layer i + 1.
    return writer.block(x, layer.index - 1, layer.block, moment)


def _write_final_expand(writer: _GraphWriter, x: str, layer: LayerPlan, moment: float) -> str:
    return writer.plain_conv(x, "final_expand_layer", _conv_of(layer), moment)


def _write_pool(writer: _GraphWriter, x: str, layer: LayerPlan, moment: float) -> str:
    return writer.node("GlobalAveragePool", [x], "pool")


def _write_feature_mix(writer: _GraphWriter, x: str, layer: LayerPlan, moment: float) -> str:
    return writer.plain_conv(x, "feature_mix_layer", _conv_of(layer), moment)


def _write_classifier(writer: _GraphWriter, x: str, layer: LayerPlan, moment: float) -> str:
    return writer.classifier(x, layer.input_shape[0], layer.output_shape[0], moment)


def _write_pool_classifier(writer: _GraphWriter, x: str, layer: LayerPlan, moment: float) -> str:
    pooled = writer.node("GlobalAveragePool", [x], "pool")
    return writer.classifier(pooled, layer.input_shape[0], layer.output_shape[0], moment)


#: The writer of each `LayerPlan.kind` (every kind of `compofa.space.plan.LAYER_KINDS`).
LAYER_WRITERS: Mapping[str, LayerWriter] = MappingProxyType({
    "stem": _write_stem,
    "block": _write_block,
    "final_expand": _write_final_expand,
    "pool": _write_pool,
    "feature_mix": _write_feature_mix,
    "classifier": _write_classifier,
    "pool_classifier": _write_pool_classifier,
})


def _moments_along(layers: tuple[LayerPlan, ...]) -> list[float]:
    """The second moment of each layer's input, layer after layer.

    The image is unit normal; a conv layer's output is its activation of an
    output of the spread `moments.pre_activation` gives; a block's is its
    unit-scale projection plus, through the skip, its input; pooling keeps the
    second moment.
    """
    found = [1.0]
    for layer in layers[:-1]:
        if layer.conv is not None:
            found.append(moments.activated(layer.conv.activation))
        elif layer.block is not None:
            found.append(1.0 + (found[-1] if layer.block.residual else 0.0))
        elif layer.kind == "pool":
            found.append(found[-1])
        else:
            raise ValueError(f"a {layer.kind} layer ends the network")
    return found


def layer_input_moments(plan: NetworkPlan) -> list[float]:
    """The second moment of each layer's input in a network kept at a steady scale (`compofa.graphs.moments`).

    Each block and head layer is given the moment it has in the supernet (every
    stage at full depth): a residual stream grows with the depth of its stage,
    and the head after a shallow last stage would otherwise get other weights
    than after a deep one, breaking "same initializer name, same bytes".
    """
    full = plan_supernet(plan.family, plan.width)
    at_position, at_kind = {}, {}
    for layer, moment in zip(full.layers, _moments_along(full.layers)):
        if layer.block is not None:
            at_position[layer.block.position] = moment
        else:
            at_kind[layer.kind] = moment
    return [at_position[layer.block.position] if layer.block is not None else at_kind[layer.kind]
            for layer in plan.layers]


# -- the model ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnnxGraph:
    """An ONNX model held as its small protobuf skeleton plus its weight arrays.

    Serializing a ~40 MB model through protobuf copies every weight twice;
    `write` streams the weights from their arrays into the file instead.
    """

    skeleton: onnx.ModelProto  # the model without initializers
    weights: tuple[tuple[str, np.ndarray], ...]

    def to_proto(self) -> onnx.ModelProto:
        model = onnx.ModelProto()
        model.CopyFrom(self.skeleton)
        model.graph.initializer.extend(numpy_helper.from_array(array, name) for name, array in self.weights)
        return model

    def write(self, handle: IO[bytes], locate: Callable[[str, np.ndarray], str] | None = None) -> int:
        """Write the serialized model to `handle`; returns the bytes written.

        With `locate`, every weight of at least `EXTERNAL_MIN_BYTES` is stored
        outside the model: `locate(name, array)` saves it and returns its path
        relative to the model's folder (ONNX external data).

        Protobuf fields may come in any order and a repeated field may be
        appended to a serialized message, so the file is: the model without
        its graph, then the graph field framed by hand: the graph without its
        inline initializers, then one framed TensorProto per inline weight
        whose raw_data bytes come straight from the array.
        """
        model = onnx.ModelProto()
        model.CopyFrom(self.skeleton)
        inline = []
        for name, array in self.weights:
            if locate is not None and array.nbytes >= EXTERNAL_MIN_BYTES:
                model.graph.initializer.append(_external_tensor(name, array, locate(name, array)))
            else:
                inline.append((name, array))
        graph = model.graph.SerializeToString()
        model.ClearField("graph")
        tensors = []
        for name, array in inline:
            header = TensorProto(dims=array.shape, data_type=TensorProto.FLOAT, name=name).SerializeToString()
            raw_frame = _field_header(_TENSOR_RAW_DATA, array.nbytes)
            tensors.append((header + raw_frame, array))
        tensor_sizes = [len(head) + array.nbytes for head, array in tensors]
        graph_size = len(graph) + sum(len(_field_header(_GRAPH_INITIALIZER, size)) + size for size in tensor_sizes)
        written = handle.write(model.SerializeToString() + _field_header(_MODEL_GRAPH, graph_size) + graph)
        for (head, array), size in zip(tensors, tensor_sizes):
            written += handle.write(_field_header(_GRAPH_INITIALIZER, size) + head)
            written += handle.write(array.data.cast("B"))  # the arrays are C-contiguous (`constant`)
        return written


#: Weights smaller than this stay inside the model even when others are external.
EXTERNAL_MIN_BYTES = 4096


def _external_tensor(name: str, array: np.ndarray, location: str) -> TensorProto:
    tensor = TensorProto(dims=array.shape, data_type=TensorProto.FLOAT, name=name)
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(array.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


# Field numbers in onnx.proto (ModelProto.graph, GraphProto.initializer,
# TensorProto.raw_data); all three are length-delimited (wire type 2).
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = 7, 5, 9


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field_header(field: int, length: int) -> bytes:
    return _varint(field << 3 | 2) + _varint(length)


def _model(
    writer: _GraphWriter, name: str, input_shape: tuple[int, ...], output: str, output_shape: tuple[int, ...],
    batch: int, metadata: Mapping[str, str] | None,
) -> OnnxGraph:
    writer.nodes[-1].output[0] = output  # the last node writes the graph output
    graph = helper.make_graph(
        writer.nodes,
        name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch, *input_shape])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [batch, *output_shape])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="compofa")
    # Readers older than the installed onnx package reject its newest IR version.
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return OnnxGraph(model, tuple(writer.initializers))


def count_layers(plan: NetworkPlan) -> int:
    """How many layers `build_layer_model` splits `plan` into (`plan.layers`, as many as its LUT keys)."""
    return len(plan.layers)


def layer_input_shape(plan: NetworkPlan, layer: int, batch: int = 1) -> tuple[int, ...]:
    """The input shape of `build_layer_model(plan, ..., layer, batch)`."""
    return (batch, *plan.layers[layer].input_shape)


def build_onnx_model(
    plan: NetworkPlan,
    weights: Weights,
    batch: int = 1,
    metadata: Mapping[str, str] | None = None,
) -> OnnxGraph:
    """The ONNX model of a subnet laid out by `plan` with `weights`.

    Input ``input`` is ``[batch, 3, R, R]`` float32 (NCHW), output ``logits``
    is ``[batch, num_classes]``.
    """
    writer = _GraphWriter(weights)
    layers = plan.layers
    x = INPUT_NAME
    for layer, moment in zip(layers, layer_input_moments(plan)):
        x = LAYER_WRITERS[layer.kind](writer, x, layer, moment)
    return _model(writer, "compofa_subnet", layers[0].input_shape, OUTPUT_NAME, layers[-1].output_shape, batch,
                  metadata)


def build_layer_model(
    plan: NetworkPlan,
    weights: Weights,
    layer: int,
    batch: int = 1,
    metadata: Mapping[str, str] | None = None,
) -> OnnxGraph:
    """The ONNX model of layer `layer` of `plan` (`plan.layers[layer]`) alone, as a layer lookup table times it.

    Input ``input`` has the layer's input shape, output ``output`` its output
    shape; chaining the layers of a plan gives the network's logits.
    """
    layers = plan.layers
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer {layer} is out of range: this network has {len(layers)} layers")
    writer = _GraphWriter(weights)
    step = layers[layer]
    LAYER_WRITERS[step.kind](writer, INPUT_NAME, step, layer_input_moments(plan)[layer])
    return _model(writer, f"compofa_layer{layer}", step.input_shape, LAYER_OUTPUT_NAME, step.output_shape, batch,
                  metadata)


def network_parameters(
    plan: NetworkPlan, weights: Weights
) -> list[tuple[Parameter, np.ndarray, np.ndarray | None]]:
    """Every parameter of `plan`'s graph with the arrays `weights` gives it, in graph order.

    This is how a PyTorch module gets exactly the weights of a graph
    (`compofa.supernet.fresh.seeded_subnet`).
    """
    recorded: list[tuple[Parameter, np.ndarray, np.ndarray | None]] = []

    def record(parameter: Parameter, /) -> tuple[np.ndarray, np.ndarray | None]:
        weight, bias = weights(parameter)
        recorded.append((parameter, weight, bias))
        return weight, bias

    build_onnx_model(plan, record)
    return recorded
