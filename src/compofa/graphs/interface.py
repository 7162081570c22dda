"""What compofa's exports look like from outside, importable without onnx or torch.

Backends, sources and the CLI need these before (or without) building a graph:
the input and output names and opset of every ONNX model, the export routes and
the file types.
"""

#: ONNX opset of the graphs: 14 is the first with HardSwish; 17 is widely
#: supported by ONNX Runtime and TensorRT.
OPSET = 17
#: The one input: ``[batch, 3, R, R]`` float32 NCHW for a subnet, the layer's input shape for a layer.
INPUT_NAME = "input"
#: The output of a subnet's graph: ``[batch, num_classes]``.
OUTPUT_NAME = "logits"
#: The output of a one-layer graph.
LAYER_OUTPUT_NAME = "output"

#: Export routes: ``graph`` writes the ONNX graph from the subnet's plan (milliseconds, no torch);
#: ``torch`` traces the PyTorch subnet with `torch.onnx.export` (kept as an independent cross-check).
METHODS = ("graph", "torch")
#: Export file types by suffix.
SUFFIXES = {".onnx": "ONNX", ".pt": "PyTorch", ".pth": "PyTorch"}
