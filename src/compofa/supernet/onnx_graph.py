"""Build a subnet's ONNX graph directly from its plan and weights.

Tracing a PyTorch module per subnet costs about half a second; the networks of
a family are so regular that the graph can be written out from the
`NetworkPlan` instead, in milliseconds. BatchNorm is folded into the preceding
conv (as exporters do in eval mode), so the graph holds only Conv, activation,
pooling, Mul/Add and one Gemm. A parity test checks its outputs against the
PyTorch subnet on every design space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Callable, Mapping

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from compofa.space.plan import BlockPlan, ConvPlan, NetworkPlan

#: ONNX opset of the graphs: 14 is the first with HardSwish; 17 is widely
#: supported by ONNX Runtime and TensorRT.
OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
LAYER_OUTPUT_NAME = "output"


class _GraphWriter:
    """Accumulates nodes and initializers under unique names."""

    def __init__(self, state: Mapping[str, torch.Tensor], bn_eps: float) -> None:
        self.state = state
        self.bn_eps = bn_eps
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[tuple[str, np.ndarray]] = []

    def weight(self, name: str) -> np.ndarray:
        return self.state[name].detach().cpu().numpy()

    def constant(self, name: str, value: np.ndarray) -> str:
        self.weights.append((name, np.ascontiguousarray(value, dtype="<f4")))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

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

    def conv(
        self,
        x: str,
        name: str,
        weight_key: str,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bn_prefix: str | None = None,
        bias_key: str | None = None,
        weights: str | None = None,
    ) -> str:
        """A 'same'-padded conv; the BatchNorm at `bn_prefix`, if any, is folded in.

        Its initializers are named after `weights` (default `name`).
        """
        weight = self.weight(weight_key)
        offset = self.weight(bias_key) if bias_key else None
        if bn_prefix:
            # Per-channel factors in float64; the big tensor is scaled once in float32.
            variance = self.weight(f"{bn_prefix}.running_var").astype(np.float64)
            scale = self.weight(f"{bn_prefix}.weight") / np.sqrt(variance + self.bn_eps)
            shift = self.weight(f"{bn_prefix}.bias") - self.weight(f"{bn_prefix}.running_mean") * scale
            weight = weight * scale.astype(np.float32)[:, None, None, None]
            offset = shift if offset is None else offset * scale + shift
        weights = weights or name
        inputs = [x, self.constant(f"{weights}.w", weight)]
        if offset is not None:
            inputs.append(self.constant(f"{weights}.b", offset))
        pad = kernel_size // 2
        return self.node(
            "Conv",
            inputs,
            f"{name}.conv",
            kernel_shape=[kernel_size, kernel_size],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
            group=groups,
        )

    def conv_bn(
        self,
        x: str,
        prefix: str,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bn: bool = True,
        weights: str | None = None,
    ) -> str:
        """A conv stored as `prefix`.conv.weight with its BatchNorm at `prefix`.bn."""
        bn_prefix = f"{prefix}.bn" if bn else None
        return self.conv(x, prefix, f"{prefix}.conv.weight", kernel_size, stride, groups, bn_prefix, weights=weights)

    def plain_conv(self, x: str, prefix: str, plan: ConvPlan) -> str:
        y = self.conv_bn(x, prefix, plan.kernel_size, plan.stride, bn=plan.batch_norm)
        return self.activation(y, plan.activation, prefix)

    def block(self, x: str, prefix: str, plan: BlockPlan) -> str:
        # Initializers are named by what determines their values within one
        # supernet (position and shape), not by the position in this subnet:
        # the same name then means the same bytes in every subnet's graph,
        # which lets an export cache store each array once.
        weights = (
            f"block{plan.position}.in{plan.in_channels}.mid{plan.mid_channels}"
            f".out{plan.out_channels}.k{plan.kernel_size}"
        )
        y = x
        if plan.has_expand_conv:
            y = self.conv_bn(y, f"{prefix}.inverted_bottleneck", 1, weights=f"{weights}.inverted_bottleneck")
            y = self.activation(y, plan.activation, f"{prefix}.ib")
        y = self.conv_bn(
            y, f"{prefix}.depth_conv", plan.kernel_size, plan.stride, plan.mid_channels, weights=f"{weights}.depth_conv"
        )
        y = self.activation(y, plan.activation, f"{prefix}.dw")
        if plan.use_se:
            y = self.squeeze_excite(y, f"{prefix}.depth_conv.se", f"{weights}.se")
        y = self.conv_bn(y, f"{prefix}.point_linear", 1, weights=f"{weights}.point_linear")
        return self.node("Add", [y, x], f"{prefix}.add") if plan.residual else y

    def squeeze_excite(self, x: str, prefix: str, weights: str) -> str:
        pooled = self.node("GlobalAveragePool", [x], f"{prefix}.pool")
        reduce = self.conv(
            pooled, f"{prefix}.reduce", f"{prefix}.fc.reduce.weight", 1,
            bias_key=f"{prefix}.fc.reduce.bias", weights=f"{weights}.reduce",
        )
        relu = self.node("Relu", [reduce], f"{prefix}.relu")
        expand = self.conv(
            relu, f"{prefix}.expand", f"{prefix}.fc.expand.weight", 1,
            bias_key=f"{prefix}.fc.expand.bias", weights=f"{weights}.expand",
        )
        # h_sigmoid(x) = relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)
        gate = self.node("HardSigmoid", [expand], f"{prefix}.gate", alpha=1.0 / 6.0, beta=0.5)
        return self.node("Mul", [x, gate], f"{prefix}.mul")


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

    def write(self, handle: BinaryIO, locate: Callable[[str, np.ndarray], str] | None = None) -> int:
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
            written += handle.write(memoryview(array).cast("B"))
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


@dataclass(frozen=True)
class _Step:
    """One layer as a layer lookup table counts them: what it writes and the shape it reads."""

    input_shape: tuple[int, ...]  # without the batch dimension
    output_shape: tuple[int, ...]
    write: Callable[[_GraphWriter, str], str]


def _classifier(writer: _GraphWriter, x: str) -> str:
    x = writer.node("Flatten", [x], "flatten", axis=1)
    weight = writer.constant("classifier.w", writer.weight("classifier.linear.weight"))
    bias = writer.constant("classifier.b", writer.weight("classifier.linear.bias"))
    return writer.node("Gemm", [x, weight, bias], "classifier", transB=1)


def _steps(plan: NetworkPlan) -> list[_Step]:
    """The layers of `plan` in execution order, split as OFA's lookup tables key them.

    MobileNetV3: stem, blocks, final expand, pooling, feature mix, classifier.
    ProxylessNAS: stem, blocks, feature mix, then pooling with the classifier.
    """
    stem = plan.stem
    steps = [_Step((3, plan.resolution, plan.resolution), (stem.out_channels, stem.output_size, stem.output_size),
                   lambda w, x: w.plain_conv(x, "first_conv", stem))]
    for index, block in enumerate(plan.blocks):
        steps.append(_Step(
            (block.in_channels, block.input_size, block.input_size),
            (block.out_channels, block.output_size, block.output_size),
            lambda w, x, index=index, block=block: w.block(x, f"blocks.{index}.conv", block),
        ))
    final, mix, classes = plan.final_expand, plan.feature_mix, plan.num_classes
    if final is not None:
        side = final.input_size
        steps.append(_Step((final.in_channels, side, side), (final.out_channels, side, side),
                           lambda w, x: w.plain_conv(x, "final_expand_layer", final)))
    if plan.family.feature_mix_after_pool:
        side = mix_side = steps[-1].output_shape[-1]
        channels = steps[-1].output_shape[0]
        steps.append(_Step((channels, side, side), (channels, 1, 1), lambda w, x: w.node("GlobalAveragePool", [x], "pool")))
        steps.append(_Step((mix.in_channels, 1, 1), (mix.out_channels, 1, 1),
                           lambda w, x: w.plain_conv(x, "feature_mix_layer", mix)))
        steps.append(_Step((mix.out_channels, 1, 1), (classes,), _classifier))
    else:
        mix_side = mix.input_size
        steps.append(_Step((mix.in_channels, mix_side, mix_side), (mix.out_channels, mix_side, mix_side),
                           lambda w, x: w.plain_conv(x, "feature_mix_layer", mix)))
        steps.append(_Step((mix.out_channels, mix_side, mix_side), (classes,),
                           lambda w, x: _classifier(w, w.node("GlobalAveragePool", [x], "pool"))))
    return steps


def count_layers(plan: NetworkPlan) -> int:
    """How many layers `build_layer_model` splits `plan` into (as many as the family's LUT keys)."""
    return len(_steps(plan))


def layer_input_shape(plan: NetworkPlan, layer: int, batch: int = 1) -> tuple[int, ...]:
    """The input shape of `build_layer_model(plan, ..., layer, batch)`."""
    return (batch, *_steps(plan)[layer].input_shape)


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
    return OnnxGraph(model, tuple(writer.weights))


def build_onnx_model(
    plan: NetworkPlan,
    state: Mapping[str, torch.Tensor],
    batch: int = 1,
    metadata: Mapping[str, str] | None = None,
) -> OnnxGraph:
    """The ONNX model of a subnet laid out by `plan` with weights `state`.

    `state` uses the names of a `Subnet`'s state_dict. Input ``input`` is
    ``[batch, 3, R, R]`` float32 (NCHW), output ``logits`` is
    ``[batch, num_classes]``.
    """
    writer = _GraphWriter(state, plan.family.bn_eps)
    steps = _steps(plan)
    x = INPUT_NAME
    for step in steps:
        x = step.write(writer, x)
    return _model(writer, "compofa_subnet", steps[0].input_shape, OUTPUT_NAME, steps[-1].output_shape, batch, metadata)


def build_layer_model(
    plan: NetworkPlan,
    state: Mapping[str, torch.Tensor],
    layer: int,
    batch: int = 1,
    metadata: Mapping[str, str] | None = None,
) -> OnnxGraph:
    """The ONNX model of layer `layer` of `plan` alone, as a layer lookup table times it.

    Layers are numbered as the family's lookup-table keys are listed
    (`compofa.devices.lut.layer_keys`): 0 is the stem, 1 to B the blocks, then
    the head layers. Input ``input`` has the layer's input shape, output
    ``output`` its output shape; chaining the layers of a plan gives the
    network's logits.
    """
    steps = _steps(plan)
    if not 0 <= layer < len(steps):
        raise ValueError(f"layer {layer} is out of range: this network has {len(steps)} layers")
    writer = _GraphWriter(state, plan.family.bn_eps)
    step = steps[layer]
    step.write(writer, INPUT_NAME)
    return _model(writer, f"compofa_layer{layer}", step.input_shape, LAYER_OUTPUT_NAME, step.output_shape, batch,
                  metadata)
