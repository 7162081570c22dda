"""Layer lookup tables in the OFA format: the files, the key grammar, the layer-sum estimate.

A layer lookup table (LUT) holds one latency per distinct layer of a family at
each input resolution; a subnet's latency is estimated as the sum of its
layers' entries. Pure data (space, numpy, yaml): the `lut` device backend and
search's ``lut:`` latency source both read tables through `LutPredictor`.

- `compofa.lut.format`: ``{R}_lookup_table.yaml`` files (`LayerTable`, `LutEntry`).
- `compofa.lut.keys`: the key of each layer of a `NetworkPlan`.
- `compofa.lut.estimate`: `LayerSumModel` and `LutPredictor`.
- `compofa.lut.lookup`: `LookupTable` (several resolutions) and the shipped tables.
- `compofa.lut.layers`: the distinct layers of a design space.
"""

from compofa.lut.estimate import LayerSumModel, LutPredictor, MissingLayerError
from compofa.lut.format import (
    FILE_PATTERN,
    LayerTable,
    LutEntry,
    LutError,
    dump_layer_table,
    parse_layer_table,
    read_layer_table,
    write_layer_table,
)
from compofa.lut.keys import KEY_GRAMMARS, KeyGrammar, key_grammar, layer_key, layer_keys
from compofa.lut.layers import Layer, check_coverage, distinct_layers, missing_layers, widest_space
from compofa.lut.lookup import SHIPPED_TABLES, LookupTable, ShippedTable, write_lut

__all__ = [
    "FILE_PATTERN",
    "KEY_GRAMMARS",
    "KeyGrammar",
    "LayerSumModel",
    "LayerTable",
    "Layer",
    "LookupTable",
    "LutEntry",
    "LutError",
    "LutPredictor",
    "MissingLayerError",
    "SHIPPED_TABLES",
    "ShippedTable",
    "check_coverage",
    "distinct_layers",
    "dump_layer_table",
    "key_grammar",
    "layer_key",
    "layer_keys",
    "missing_layers",
    "parse_layer_table",
    "read_layer_table",
    "widest_space",
    "write_layer_table",
    "write_lut",
]
