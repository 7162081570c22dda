"""ONNX graphs of any subnet or single layer, written from the network plan without torch.

- `compofa.graphs.interface`: the input/output names and opset of every graph (no onnx import).
- `compofa.graphs.onnx_graph`: the graph writer, one writer per `LayerPlan.kind` of
  `NetworkPlan.layers`; weights come from a `Weights` callable (`StateDictWeights`
  folds a subnet's state_dict).
- `compofa.graphs.seeded`: `SeededWeights`, reproducible arrays with no supernet at all.
- `compofa.graphs.cache`: `write_graph`, the content-addressed `OnnxExporter`,
  `default_cache_dir`, `EXPORTER_VERSION`.

Nothing here imports torch or `compofa.supernet`, which builds on this package
(its ONNX export writes through `onnx_graph`); the sources that hand networks to
device backends, with or without a checkpoint, are one floor up in
`compofa.sources`. The submodules are imported one by one, so a
caller pays only for what it uses (onnx itself takes a third of a second).
"""
