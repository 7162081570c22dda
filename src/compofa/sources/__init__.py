"""What device backends time, and `compofa export`: networks with seeded weights or a checkpoint's.

- `compofa.sources.subnet`: `SubnetSource`, the subnets of one supernet as ONNX files
  (from the export cache) or PyTorch modules.
- `compofa.sources.layers`: `LayerSource`, one-layer networks for lookup tables.
- `compofa.sources.export`: `export_subnet`, what ``compofa export`` does.

Without a checkpoint everything is built by `compofa.graphs` from seeded numpy
weights, and torch is never imported. A checkpoint (a torch pickle) or a PyTorch
module goes through `compofa.supernet`, imported only when asked for, which is
why this package sits above both.
"""
