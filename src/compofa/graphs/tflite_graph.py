"""Build a subnet's LiteRT (``.tflite``) model directly from its plan and weights, without torch or TensorFlow.

A phone runs the LiteRT format. Converting a PyTorch subnet with a general
converter takes half a minute; the networks of a family are so regular that,
as for ONNX (`compofa.graphs.onnx_graph`), the model can be written out from
the `NetworkPlan`: layer by layer from `NetworkPlan.layers`, one writer per
`LayerPlan.kind` (`TFLITE_LAYER_WRITERS`), with the same `Parameter`s and so the
same arrays from the same `Weights` as the ONNX graph. The model computes the
ONNX graph's function; a test checks the outputs against ONNX Runtime on every
design space.

What differs is only what the format asks:

- NHWC layout: a subnet reads ``[batch, R, R, 3]``; a layer model reads and
  writes its `LayerPlan` shapes with channels last (``(C, H, W)`` becomes
  ``[batch, H, W, C]``; the classifier's ``(classes,)`` stays ``[batch, classes]``).
  Conv weights are OHWI, depthwise weights ``[1, k, k, C]``.
- Padding: the ONNX graph pads ``k // 2`` on every side. TFLite's SAME padding
  is that whenever stride is 1 or the input side is odd; a stride-2 conv on an
  even side would pad one less at the top and left under SAME, so there the
  model pads explicitly (PAD, then a VALID conv), as converters write it.
- ReLU and ReLU6 are fused into the conv before them (as converters do);
  h-swish is TFLite's HARD_SWISH; the squeeze-excite gate
  ``hard_sigmoid(x) = relu6(x + 3) / 6`` is an ADD with a fused ReLU6, then a
  MUL; global average pooling is MEAN over height and width.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np

from compofa.errors import ExportError
from compofa.graphs import moments
from compofa.graphs.interface import INPUT_NAME, LAYER_OUTPUT_NAME, OUTPUT_NAME
from compofa.graphs.onnx_graph import Parameter, Weights, layer_input_moments
from compofa.graphs.tflite_format import (
    Activation,
    AddOptions,
    BuiltinOperator,
    BuiltinOptions,
    Conv2DOptions,
    DepthwiseConv2DOptions,
    EmptyOptions,
    FullyConnectedOptions,
    ModelBuilder,
    MulOptions,
    Options,
    Padding,
    ReducerOptions,
    ReshapeOptions,
)
from compofa.space.plan import BlockPlan, ConvPlan, LayerPlan, NetworkPlan, conv_output_size

#: Bump whenever the model written for the same inputs changes (the TFLite export cache's key holds it).
TFLITE_WRITER_VERSION = 1

#: Activations a conv computes itself (fused); any other follows as its own operator.
_FUSED = {"relu": Activation.RELU, "relu6": Activation.RELU6}


def nhwc_shape(shape: tuple[int, ...], batch: int) -> tuple[int, ...]:
    """A `LayerPlan` shape per image (``(C, H, W)`` or ``(classes,)``) as a TFLite tensor of `batch` images."""
    if len(shape) == 3:
        channels, height, width = shape
        return (batch, height, width, channels)
    return (batch, *shape)


def same_padding_is_symmetric(size: int, kernel_size: int, stride: int) -> bool:
    """Whether TFLite's SAME padding of a `size` input pads ``kernel_size // 2`` on both sides, as ONNX does here.

    SAME pads ``max((out - 1) * stride + k - size, 0)`` in all, the smaller
    half first; symmetric ``k // 2`` padding (odd k) is ``k - 1`` in all.
    """
    total = max((conv_output_size(size, stride) - 1) * stride + kernel_size - size, 0)
    return total == 2 * (kernel_size // 2)


def _conv_layout(weight: np.ndarray) -> np.ndarray:
    """``(out, in, k, k)`` (ONNX) to OHWI (CONV_2D)."""
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1))


def _depthwise_layout(weight: np.ndarray) -> np.ndarray:
    """``(C, 1, k, k)`` (ONNX, one group a channel) to ``[1, k, k, C]`` (DEPTHWISE_CONV_2D, multiplier 1)."""
    return np.ascontiguousarray(weight.transpose(1, 2, 3, 0))


class _TfliteWriter:
    """Accumulates one subgraph's tensors and operators; tensors are referred to by index."""

    def __init__(self, weights: Weights, batch: int) -> None:
        if batch < 1:
            raise ExportError(f"batch must be at least 1, got {batch}")
        self.weights = weights
        self.batch = batch
        self.model = ModelBuilder()
        self._constants: dict[str, int] = {}

    def input(self, shape: tuple[int, ...]) -> int:
        return self.model.add_tensor(INPUT_NAME, nhwc_shape(shape, self.batch))

    def shape(self, x: int) -> tuple[int, ...]:
        return self.model.tensors[x].shape

    def constant(self, name: str, value: np.ndarray) -> int:
        """A constant tensor, added once per name (a name means one value, as in the ONNX graph)."""
        if name not in self._constants:
            self._constants[name] = self.model.add_constant(name, value)
        return self._constants[name]

    def node(self, opcode: BuiltinOperator, inputs: list[int], output: str, shape: tuple[int, ...],
             options: Options | None = None) -> int:
        """An operator writing a new tensor named `output`; returns the tensor."""
        result = self.model.add_tensor(output, shape)
        self.model.add_operator(opcode, inputs, [result], options)
        return result

    def parameter(self, parameter: Parameter, layout: Callable[[np.ndarray], np.ndarray]) -> list[int]:
        """The tensors of `parameter`'s weight (in `layout`) and bias, from `weights`."""
        weight, bias = self.weights(parameter)
        if (bias is None) == parameter.has_bias:
            raise ValueError(f"{parameter.name} {'needs' if parameter.has_bias else 'has no'} bias")
        tensors = [self.constant(f"{parameter.name}.w", layout(np.asarray(weight, dtype=np.float32)))]
        if bias is not None:
            tensors.append(self.constant(f"{parameter.name}.b", np.asarray(bias, dtype=np.float32)))
        return tensors

    def activation(self, x: int, kind: str | None, name: str) -> int:
        """An activation that follows a conv as an operator of its own (ReLU and ReLU6 are fused, see `conv`)."""
        if kind is None:
            return x
        if kind == "h_swish":
            return self.node(BuiltinOperator.HARD_SWISH, [x], f"{name}.hswish", self.shape(x),
                             EmptyOptions(BuiltinOptions.HardSwishOptions))
        raise ValueError(f"unknown activation {kind!r}")

    def conv(self, x: int, name: str, parameter: Parameter, stride: int = 1, depthwise: bool = False,
             activation: str | None = None, activation_name: str = "") -> int:
        """A conv of `parameter` (a square kernel) padded by ``k // 2`` on every side, then `activation`.

        ReLU and ReLU6 are fused into the conv, whose output then takes the
        activation's name; h-swish follows as an operator named after `activation_name`.
        """
        kernel_size = parameter.shape[-1]
        batch, size, _, _ = self.shape(x)
        padding = Padding.SAME
        if not same_padding_is_symmetric(size, kernel_size, stride):
            pad = kernel_size // 2
            pads = np.array([[0, 0], [pad, pad], [pad, pad], [0, 0]], dtype=np.int32)
            padded = (batch, size + 2 * pad, size + 2 * pad, self.shape(x)[3])
            x = self.node(BuiltinOperator.PAD, [x, self.constant(f"pads{pad}", pads)], f"{name}.pad", padded,
                          EmptyOptions(BuiltinOptions.PadOptions))
            padding = Padding.VALID
        side = conv_output_size(size, stride)
        fused = _FUSED.get(activation or "", Activation.NONE)
        output = f"{activation_name}.{activation}" if fused != Activation.NONE else f"{name}.conv"
        tensors = self.parameter(parameter, _depthwise_layout if depthwise else _conv_layout)
        if len(tensors) == 1:
            # TFLite's float convs require a bias; zeros add nothing (the ONNX graph's conv has none).
            zeros = np.zeros(parameter.shape[0], dtype=np.float32)
            tensors.append(self.constant(f"{parameter.name}.zero_bias", zeros))
        if depthwise:
            options: Options = DepthwiseConv2DOptions(stride, padding, fused)
            opcode = BuiltinOperator.DEPTHWISE_CONV_2D
        else:
            options, opcode = Conv2DOptions(stride, padding, fused), BuiltinOperator.CONV_2D
        y = self.node(opcode, [x, *tensors], output, (batch, side, side, parameter.shape[0]), options)
        return y if fused != Activation.NONE else self.activation(y, activation, activation_name)

    def mean(self, x: int, name: str) -> int:
        """Global average pooling: the mean over height and width, kept as ``[batch, 1, 1, C]``."""
        axes = self.constant("mean.axes", np.array([1, 2], dtype=np.int32))
        batch, _, _, channels = self.shape(x)
        return self.node(BuiltinOperator.MEAN, [x, axes], name, (batch, 1, 1, channels), ReducerOptions(True))

    def plain_conv(self, x: int, prefix: str, plan: ConvPlan, moment: float) -> int:
        """A conv stored as `prefix`.conv.weight with its BatchNorm (if any) at `prefix`.bn, then its activation."""
        parameter = Parameter(
            prefix,
            (plan.out_channels, plan.in_channels, plan.kernel_size, plan.kernel_size),
            f"{prefix}.conv.weight",
            bn_key=f"{prefix}.bn" if plan.batch_norm else None,
            input_moment=moment,
            output_moment=moments.pre_activation(plan.activation),
        )
        return self.conv(x, prefix, parameter, plan.stride, activation=plan.activation, activation_name=prefix)

    def block(self, x: int, index: int, plan: BlockPlan, moment: float) -> int:
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
            y = self.conv(y, f"{prefix}.inverted_bottleneck", expand, activation=plan.activation,
                          activation_name=f"{prefix}.ib")
            moment = activated
        depthwise = Parameter(f"{weights}.depth_conv", (mid, 1, k, k), f"{prefix}.depth_conv.conv.weight",
                              f"{prefix}.depth_conv.bn", input_moment=moment,
                              output_moment=moments.pre_activation(plan.activation))
        y = self.conv(y, f"{prefix}.depth_conv", depthwise, plan.stride, depthwise=True, activation=plan.activation,
                      activation_name=f"{prefix}.dw")
        if plan.use_se:
            y = self.squeeze_excite(y, f"{prefix}.depth_conv.se", f"{weights}.se", plan)
        project = Parameter(f"{weights}.point_linear", (plan.out_channels, mid, 1, 1),
                            f"{prefix}.point_linear.conv.weight", f"{prefix}.point_linear.bn",
                            input_moment=activated * (moments.GATE_MOMENT if plan.use_se else 1.0))
        y = self.conv(y, f"{prefix}.point_linear", project)
        if not plan.residual:
            return y
        return self.node(BuiltinOperator.ADD, [y, x], f"{prefix}.add", self.shape(y), AddOptions())

    def squeeze_excite(self, x: int, prefix: str, weights: str, plan: BlockPlan) -> int:
        mid, se = plan.mid_channels, plan.se_channels
        pooled = self.mean(x, f"{prefix}.pool")
        reduce = Parameter(f"{weights}.reduce", (se, mid, 1, 1), f"{prefix}.fc.reduce.weight",
                           bias_key=f"{prefix}.fc.reduce.bias", input_moment=moments.activated(plan.activation))
        relu = self.conv(pooled, f"{prefix}.reduce", reduce, activation="relu", activation_name=prefix)
        expand = Parameter(f"{weights}.expand", (mid, se, 1, 1), f"{prefix}.fc.expand.weight",
                           bias_key=f"{prefix}.fc.expand.bias", input_moment=moments.activated("relu"))
        expanded = self.conv(relu, f"{prefix}.expand", expand)
        # h_sigmoid(x) = relu6(x + 3) / 6
        shifted = self.node(BuiltinOperator.ADD, [expanded, self.constant("three", np.array([3.0], np.float32))],
                            f"{prefix}.gate.relu6", self.shape(expanded), AddOptions(Activation.RELU6))
        sixth = self.constant("one_sixth", np.array([1.0 / 6.0], np.float32))
        gate = self.node(BuiltinOperator.MUL, [shifted, sixth], f"{prefix}.gate", self.shape(expanded), MulOptions())
        return self.node(BuiltinOperator.MUL, [x, gate], f"{prefix}.mul", self.shape(x), MulOptions())

    def classifier(self, x: int, in_features: int, classes: int, moment: float) -> int:
        flat_shape = (self.batch, in_features)
        shape = self.constant(f"flatten.shape{self.batch}x{in_features}", np.array(flat_shape, dtype=np.int32))
        flat = self.node(BuiltinOperator.RESHAPE, [x, shape], "flatten", flat_shape, ReshapeOptions(flat_shape))
        parameter = Parameter("classifier", (classes, in_features), "classifier.linear.weight",
                              bias_key="classifier.linear.bias", input_moment=moment)
        # FULLY_CONNECTED's weights are (out, in), as the ONNX graph's Gemm (transB) keeps them.
        tensors = self.parameter(parameter, np.ascontiguousarray)
        return self.node(BuiltinOperator.FULLY_CONNECTED, [flat, *tensors], "classifier", (self.batch, classes),
                         FullyConnectedOptions())

    def finish(self, x: int, input_tensor: int, output: str, name: str, metadata: Mapping[str, str] | None) -> bytes:
        self.model.rename_tensor(x, output)  # the last operator writes the model's output
        return self.model.serialize([input_tensor], [x], name=name, description="compofa", metadata=metadata)


# -- one writer per LayerPlan.kind ---------------------------------------------------------------

#: Writes one layer: (writer, input tensor, layer, its input's second moment (`layer_input_moments`)) -> output.
TfliteLayerWriter = Callable[[_TfliteWriter, int, LayerPlan, float], int]


def _conv_of(layer: LayerPlan) -> ConvPlan:
    assert layer.conv is not None, f"a {layer.kind} layer carries its conv"
    return layer.conv


def _write_stem(writer: _TfliteWriter, x: int, layer: LayerPlan, moment: float) -> int:
    return writer.plain_conv(x, "first_conv", _conv_of(layer), moment)


def _write_block(writer: _TfliteWriter, x: int, layer: LayerPlan, moment: float) -> int:
    assert layer.block is not None, "a block layer carries its block"
    # The stem is layer 0 and the blocks follow in order, so block i of the subnet is layer i + 1.
    return writer.block(x, layer.index - 1, layer.block, moment)


def _write_final_expand(writer: _TfliteWriter, x: int, layer: LayerPlan, moment: float) -> int:
    return writer.plain_conv(x, "final_expand_layer", _conv_of(layer), moment)


def _write_pool(writer: _TfliteWriter, x: int, layer: LayerPlan, moment: float) -> int:
    return writer.mean(x, "pool")


def _write_feature_mix(writer: _TfliteWriter, x: int, layer: LayerPlan, moment: float) -> int:
    return writer.plain_conv(x, "feature_mix_layer", _conv_of(layer), moment)


def _write_classifier(writer: _TfliteWriter, x: int, layer: LayerPlan, moment: float) -> int:
    return writer.classifier(x, layer.input_shape[0], layer.output_shape[0], moment)


def _write_pool_classifier(writer: _TfliteWriter, x: int, layer: LayerPlan, moment: float) -> int:
    pooled = writer.mean(x, "pool")
    return writer.classifier(pooled, layer.input_shape[0], layer.output_shape[0], moment)


#: The writer of each `LayerPlan.kind` (every kind of `compofa.space.plan.LAYER_KINDS`).
TFLITE_LAYER_WRITERS: Mapping[str, TfliteLayerWriter] = MappingProxyType({
    "stem": _write_stem,
    "block": _write_block,
    "final_expand": _write_final_expand,
    "pool": _write_pool,
    "feature_mix": _write_feature_mix,
    "classifier": _write_classifier,
    "pool_classifier": _write_pool_classifier,
})


def build_tflite_model(
    plan: NetworkPlan,
    weights: Weights,
    batch: int = 1,
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """The ``.tflite`` model of a subnet laid out by `plan` with `weights`: the function of `build_onnx_model`.

    Input ``input`` is ``[batch, R, R, 3]`` float32 (NHWC), output ``logits``
    is ``[batch, num_classes]``; `metadata` is stored as the model's metadata records.
    """
    writer = _TfliteWriter(weights, batch)
    layers = plan.layers
    x = source = writer.input(layers[0].input_shape)
    for layer, moment in zip(layers, layer_input_moments(plan)):
        x = TFLITE_LAYER_WRITERS[layer.kind](writer, x, layer, moment)
    return writer.finish(x, source, OUTPUT_NAME, "compofa_subnet", metadata)


def build_tflite_layer_model(
    plan: NetworkPlan,
    weights: Weights,
    layer: int,
    batch: int = 1,
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """The ``.tflite`` model of layer `layer` of `plan` alone: the function of `build_layer_model`, channels last.

    Input ``input`` has the layer's input shape, output ``output`` its output
    shape, both NHWC (`nhwc_shape`); chaining the layers gives the network's logits.
    """
    layers = plan.layers
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer {layer} is out of range: this network has {len(layers)} layers")
    writer = _TfliteWriter(weights, batch)
    step = layers[layer]
    source = writer.input(step.input_shape)
    x = TFLITE_LAYER_WRITERS[step.kind](writer, source, step, layer_input_moments(plan)[layer])
    return writer.finish(x, source, LAYER_OUTPUT_NAME, f"compofa_layer{layer}", metadata)
