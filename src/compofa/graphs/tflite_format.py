"""A small writer of LiteRT (TensorFlow Lite) model files: the flatbuffer tables of a float32 inference graph.

A ``.tflite`` file is a flatbuffer of TFLite's schema (``schema.fbs``, schema
version 3): a `Model` holds operator codes, one subgraph of tensors and
operators, and buffers holding the constant tensors' bytes. This module knows
only the tables and enum values compofa's networks need, written here as named
constants from the public schema: a table's field is addressed by its slot,
its position in the table's declaration (deprecated fields count), and the
`flatbuffers` package lays the bytes out. It knows nothing of networks
(`compofa.graphs.tflite_graph` writes those).

Everything is written in one pass into a builder sized up front, the weight
bytes copied once each from their arrays, so a 40 MB subnet takes milliseconds
plus a memory copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Protocol

import flatbuffers  # ships no type information (see the mypy overrides)
import numpy as np

from compofa.errors import ExportError

#: The file identifier of every TFLite flatbuffer (bytes 4..8 of the file).
FILE_IDENTIFIER = b"TFL3"
#: `Model.version`: the schema version.
SCHEMA_VERSION = 3
#: Constant data starts on this boundary (``Buffer.data`` is ``force_align: 16``), so runtimes may map it in place.
BUFFER_ALIGNMENT = 16
#: Offsets in a flatbuffer are 32-bit signed; a model's bytes (weights inline) must stay below this.
MAX_FLATBUFFER_BYTES = 2**31 - 1
#: `OperatorCode.deprecated_builtin_code` is an int8: codes from here on are written as this placeholder there.
PLACEHOLDER_FOR_GREATER_OP_CODES = 127


class TensorType(IntEnum):
    FLOAT32 = 0
    INT32 = 2


class BuiltinOperator(IntEnum):
    ADD = 0
    CONV_2D = 3
    DEPTHWISE_CONV_2D = 4
    FULLY_CONNECTED = 9
    MUL = 18
    RESHAPE = 22
    PAD = 34
    MEAN = 40
    HARD_SWISH = 117


class BuiltinOptions(IntEnum):
    """The tags of the `BuiltinOptions` union (an operator's options table)."""

    NONE = 0
    Conv2DOptions = 1
    DepthwiseConv2DOptions = 2
    FullyConnectedOptions = 8
    AddOptions = 11
    ReshapeOptions = 17
    MulOptions = 21
    PadOptions = 22
    ReducerOptions = 27
    HardSwishOptions = 91


class Padding(IntEnum):
    SAME = 0
    VALID = 1


class Activation(IntEnum):
    """`ActivationFunctionType`: an activation fused into an operator's output."""

    NONE = 0
    RELU = 1
    RELU6 = 3


# Field slots: each field's position in its table in schema.fbs. A table is started with the number of slots
# up to the last one written; slots left unwritten read as the schema's default.
class _Model:
    VERSION, OPERATOR_CODES, SUBGRAPHS, DESCRIPTION, BUFFERS, METADATA_BUFFER, METADATA = range(7)
    SLOTS = 7


class _SubGraph:
    TENSORS, INPUTS, OUTPUTS, OPERATORS, NAME = range(5)
    SLOTS = 5


class _Tensor:
    SHAPE, TYPE, BUFFER, NAME = range(4)
    SLOTS = 4


class _Buffer:
    DATA = 0
    SLOTS = 1


class _Operator:
    OPCODE_INDEX, INPUTS, OUTPUTS, BUILTIN_OPTIONS_TYPE, BUILTIN_OPTIONS = range(5)
    SLOTS = 5


class _OperatorCode:
    DEPRECATED_BUILTIN_CODE, CUSTOM_CODE, VERSION, BUILTIN_CODE = range(4)
    SLOTS = 4


class _Metadata:
    NAME, BUFFER = range(2)
    SLOTS = 2


# -- operator options ---------------------------------------------------------------------------------


class Options(Protocol):
    """An operator's options table: its union tag and how it is written."""

    @property
    def kind(self) -> BuiltinOptions: ...

    def write(self, builder: flatbuffers.Builder) -> int:
        """Write the table; returns its offset."""
        ...


@dataclass(frozen=True)
class Conv2DOptions:
    stride: int
    padding: Padding
    activation: Activation = Activation.NONE
    kind: BuiltinOptions = BuiltinOptions.Conv2DOptions

    def write(self, builder: flatbuffers.Builder) -> int:
        # Slots: padding, stride_w, stride_h, fused_activation_function (dilations default to 1).
        builder.StartObject(4)
        builder.PrependInt8Slot(0, int(self.padding), 0)
        builder.PrependInt32Slot(1, self.stride, 0)
        builder.PrependInt32Slot(2, self.stride, 0)
        builder.PrependInt8Slot(3, int(self.activation), 0)
        return int(builder.EndObject())


@dataclass(frozen=True)
class DepthwiseConv2DOptions:
    stride: int
    padding: Padding
    activation: Activation = Activation.NONE
    depth_multiplier: int = 1
    kind: BuiltinOptions = BuiltinOptions.DepthwiseConv2DOptions

    def write(self, builder: flatbuffers.Builder) -> int:
        # Slots: padding, stride_w, stride_h, depth_multiplier, fused_activation_function.
        builder.StartObject(5)
        builder.PrependInt8Slot(0, int(self.padding), 0)
        builder.PrependInt32Slot(1, self.stride, 0)
        builder.PrependInt32Slot(2, self.stride, 0)
        builder.PrependInt32Slot(3, self.depth_multiplier, 0)
        builder.PrependInt8Slot(4, int(self.activation), 0)
        return int(builder.EndObject())


@dataclass(frozen=True)
class FullyConnectedOptions:
    activation: Activation = Activation.NONE
    kind: BuiltinOptions = BuiltinOptions.FullyConnectedOptions

    def write(self, builder: flatbuffers.Builder) -> int:
        # Slot 0: fused_activation_function; weights_format DEFAULT and keep_num_dims false are the defaults.
        builder.StartObject(1)
        builder.PrependInt8Slot(0, int(self.activation), 0)
        return int(builder.EndObject())


@dataclass(frozen=True)
class AddOptions:
    activation: Activation = Activation.NONE
    kind: BuiltinOptions = BuiltinOptions.AddOptions

    def write(self, builder: flatbuffers.Builder) -> int:
        builder.StartObject(1)
        builder.PrependInt8Slot(0, int(self.activation), 0)
        return int(builder.EndObject())


@dataclass(frozen=True)
class MulOptions:
    activation: Activation = Activation.NONE
    kind: BuiltinOptions = BuiltinOptions.MulOptions

    def write(self, builder: flatbuffers.Builder) -> int:
        builder.StartObject(1)
        builder.PrependInt8Slot(0, int(self.activation), 0)
        return int(builder.EndObject())


@dataclass(frozen=True)
class ReducerOptions:
    keep_dims: bool
    kind: BuiltinOptions = BuiltinOptions.ReducerOptions

    def write(self, builder: flatbuffers.Builder) -> int:
        builder.StartObject(1)
        builder.PrependBoolSlot(0, self.keep_dims, False)
        return int(builder.EndObject())


@dataclass(frozen=True)
class ReshapeOptions:
    """The target shape, also given as the operator's second input (runtimes read either)."""

    new_shape: tuple[int, ...]
    kind: BuiltinOptions = BuiltinOptions.ReshapeOptions

    def write(self, builder: flatbuffers.Builder) -> int:
        shape = builder.CreateNumpyVector(np.asarray(self.new_shape, dtype="<i4"))
        builder.StartObject(1)
        builder.PrependUOffsetTRelativeSlot(0, shape, 0)
        return int(builder.EndObject())


@dataclass(frozen=True)
class EmptyOptions:
    """An options table without fields (PadOptions, HardSwishOptions): written as converters write it."""

    kind: BuiltinOptions

    def write(self, builder: flatbuffers.Builder) -> int:
        builder.StartObject(0)
        return int(builder.EndObject())


# -- the model -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tensor:
    """A tensor of the subgraph; `buffer` 0 is the empty buffer (a tensor computed at run time)."""

    name: str
    shape: tuple[int, ...]
    type: TensorType = TensorType.FLOAT32
    buffer: int = 0


@dataclass(frozen=True)
class Operator:
    """An operator reading and writing tensors by index (-1: an optional input left out)."""

    opcode: BuiltinOperator
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Options | None = None


_TENSOR_TYPES = {np.dtype("<f4"): TensorType.FLOAT32, np.dtype("<i4"): TensorType.INT32}


@dataclass
class ModelBuilder:
    """A float32 model of one subgraph, assembled tensor by tensor and operator by operator, then `serialize`d.

    Buffer 0 is the empty buffer every computed tensor points at, as the
    schema asks; every constant gets a buffer of its own.
    """

    tensors: list[Tensor] = field(default_factory=list)
    operators: list[Operator] = field(default_factory=list)
    buffers: list[np.ndarray | bytes] = field(default_factory=lambda: [b""])

    def add_tensor(self, name: str, shape: Sequence[int]) -> int:
        """A float32 tensor computed at run time; returns its index."""
        self.tensors.append(Tensor(name, tuple(int(size) for size in shape)))
        return len(self.tensors) - 1

    def add_constant(self, name: str, array: np.ndarray) -> int:
        """A constant tensor holding `array` (float32 or int32, stored little-endian); returns its index."""
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        if data.dtype not in _TENSOR_TYPES:
            raise ValueError(f"constant {name} has dtype {array.dtype}; only float32 and int32 are written")
        self.buffers.append(data)
        self.tensors.append(Tensor(name, tuple(data.shape), _TENSOR_TYPES[data.dtype], len(self.buffers) - 1))
        return len(self.tensors) - 1

    def rename_tensor(self, index: int, name: str) -> None:
        self.tensors[index] = replace(self.tensors[index], name=name)

    def add_operator(self, opcode: BuiltinOperator, inputs: Sequence[int], outputs: Sequence[int],
                     options: Options | None = None) -> None:
        self.operators.append(Operator(opcode, tuple(inputs), tuple(outputs), options))

    def serialize(
        self,
        inputs: Sequence[int],
        outputs: Sequence[int],
        name: str = "main",
        description: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> bytes:
        """The model file's bytes: this subgraph reading `inputs` and writing `outputs` (tensor indices).

        Each `metadata` entry becomes one of the Model's metadata records: its
        key as the name, its UTF-8 value in a buffer of its own.
        """
        entries = [(key, value.encode()) for key, value in (metadata or {}).items()]
        payload = sum(len(data) if isinstance(data, bytes) else data.nbytes for data in self.buffers)
        payload += sum(len(value) for _, value in entries)
        # Room for every constant plus padding, and generously for the small tables, so the builder never grows.
        estimate = payload + BUFFER_ALIGNMENT * (len(self.buffers) + len(entries)) + 512 * len(self.tensors) + 65536
        if estimate > MAX_FLATBUFFER_BYTES:
            raise ExportError(f"a model of {payload / 1e9:.1f} GB of weights does not fit a TFLite flatbuffer "
                              "(2 GB at most); export a smaller network")
        builder = flatbuffers.Builder(estimate)
        buffer_tables = [_write_buffer(builder, data) for data in [*self.buffers, *(value for _, value in entries)]]
        first_metadata_buffer = len(self.buffers)
        tensors = [_write_tensor(builder, tensor) for tensor in self.tensors]
        opcodes = list(dict.fromkeys(operator.opcode for operator in self.operators))
        operators = [_write_operator(builder, operator, opcodes.index(operator.opcode)) for operator in self.operators]
        subgraph_name = builder.CreateString(name)
        subgraph_fields = (_offsets(builder, tensors), _int32s(builder, inputs), _int32s(builder, outputs),
                           _offsets(builder, operators))
        builder.StartObject(_SubGraph.SLOTS)
        for slot, value in zip((_SubGraph.TENSORS, _SubGraph.INPUTS, _SubGraph.OUTPUTS, _SubGraph.OPERATORS),
                               subgraph_fields):
            builder.PrependUOffsetTRelativeSlot(slot, value, 0)
        builder.PrependUOffsetTRelativeSlot(_SubGraph.NAME, subgraph_name, 0)
        subgraph = builder.EndObject()

        codes = _offsets(builder, [_write_operator_code(builder, opcode) for opcode in opcodes])
        records = [_write_metadata(builder, key, first_metadata_buffer + index)
                   for index, (key, _) in enumerate(entries)]
        metadata_vector = _offsets(builder, records) if records else None
        description_string = builder.CreateString(description)
        subgraphs, buffers = _offsets(builder, [subgraph]), _offsets(builder, buffer_tables)
        builder.StartObject(_Model.SLOTS)
        builder.PrependUint32Slot(_Model.VERSION, SCHEMA_VERSION, 0)
        builder.PrependUOffsetTRelativeSlot(_Model.OPERATOR_CODES, codes, 0)
        builder.PrependUOffsetTRelativeSlot(_Model.SUBGRAPHS, subgraphs, 0)
        builder.PrependUOffsetTRelativeSlot(_Model.DESCRIPTION, description_string, 0)
        builder.PrependUOffsetTRelativeSlot(_Model.BUFFERS, buffers, 0)
        if metadata_vector is not None:
            builder.PrependUOffsetTRelativeSlot(_Model.METADATA, metadata_vector, 0)
        model = builder.EndObject()
        builder.Finish(model, file_identifier=FILE_IDENTIFIER)
        return bytes(memoryview(builder.Bytes)[builder.Head():])


def _offsets(builder: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    """A vector of tables (offsets), in the given order."""
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return int(builder.EndVector())


def _int32s(builder: flatbuffers.Builder, values: Sequence[int]) -> int:
    return int(builder.CreateNumpyVector(np.asarray(values, dtype="<i4")))


def _write_buffer(builder: flatbuffers.Builder, data: np.ndarray | bytes) -> int:
    raw = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data.reshape(-1).view(np.uint8)
    vector = None
    if raw.size:
        # Pad so that the bytes start on the boundary once the vector's length is prepended before them; the
        # file's size is then a multiple of it too (`Finish` aligns to the largest alignment used).
        builder.Prep(BUFFER_ALIGNMENT, raw.size)
        vector = builder.CreateNumpyVector(raw)
    builder.StartObject(_Buffer.SLOTS)
    if vector is not None:
        builder.PrependUOffsetTRelativeSlot(_Buffer.DATA, vector, 0)
    return int(builder.EndObject())


def _write_tensor(builder: flatbuffers.Builder, tensor: Tensor) -> int:
    name = builder.CreateString(tensor.name)
    shape = _int32s(builder, tensor.shape)
    builder.StartObject(_Tensor.SLOTS)
    builder.PrependUOffsetTRelativeSlot(_Tensor.SHAPE, shape, 0)
    builder.PrependInt8Slot(_Tensor.TYPE, int(tensor.type), 0)
    builder.PrependUint32Slot(_Tensor.BUFFER, tensor.buffer, 0)
    builder.PrependUOffsetTRelativeSlot(_Tensor.NAME, name, 0)
    return int(builder.EndObject())


def _write_operator(builder: flatbuffers.Builder, operator: Operator, opcode_index: int) -> int:
    inputs, outputs = _int32s(builder, operator.inputs), _int32s(builder, operator.outputs)
    options = operator.options.write(builder) if operator.options is not None else None
    builder.StartObject(_Operator.SLOTS)
    builder.PrependUint32Slot(_Operator.OPCODE_INDEX, opcode_index, 0)
    builder.PrependUOffsetTRelativeSlot(_Operator.INPUTS, inputs, 0)
    builder.PrependUOffsetTRelativeSlot(_Operator.OUTPUTS, outputs, 0)
    if operator.options is not None:
        builder.PrependUint8Slot(_Operator.BUILTIN_OPTIONS_TYPE, int(operator.options.kind), 0)
        builder.PrependUOffsetTRelativeSlot(_Operator.BUILTIN_OPTIONS, options, 0)
    return int(builder.EndObject())


def _write_operator_code(builder: flatbuffers.Builder, opcode: BuiltinOperator) -> int:
    # Readers of schema versions before builtin_code existed read only the int8 field; newer readers take the
    # larger of the two, so both are written.
    builder.StartObject(_OperatorCode.SLOTS)
    deprecated_code = min(int(opcode), PLACEHOLDER_FOR_GREATER_OP_CODES)
    builder.PrependInt8Slot(_OperatorCode.DEPRECATED_BUILTIN_CODE, deprecated_code, 0)
    builder.PrependInt32Slot(_OperatorCode.VERSION, 1, 1)
    builder.PrependInt32Slot(_OperatorCode.BUILTIN_CODE, int(opcode), 0)
    return int(builder.EndObject())


def _write_metadata(builder: flatbuffers.Builder, name: str, buffer: int) -> int:
    key = builder.CreateString(name)
    builder.StartObject(_Metadata.SLOTS)
    builder.PrependUOffsetTRelativeSlot(_Metadata.NAME, key, 0)
    builder.PrependUint32Slot(_Metadata.BUFFER, buffer, 0)
    return int(builder.EndObject())
