"""Seeded weights: a reproducible array for every parameter of a graph, with no supernet and no torch.

Latency does not depend on the values of the weights, with one exception that
matters: weights that shrink activations layer after layer (as untrained OFA
networks in eval mode do) drive them into subnormal floats, which many CPUs
process tens of times slower, and weights that grow them overflow. The graph
holds no BatchNorm (it is folded into the convs), so the arrays are drawn
already folded and do BatchNorm's work: a conv whose input has second moment
``m`` and whose output should have second moment ``t`` (`Parameter.input_moment`
and `output_moment`, followed through the network by the graph writer with
`compofa.graphs.moments`) gets weights of variance ``t / (fan_in * m)`` and a
small bias, drawn uniformly (as He's uniform initialisation; eight times faster
to draw than normal values, which matters at 10 million weights per subnet).
Activations then keep a steady scale through the whole network, as in a
trained one.

Each array depends only on (generator version, seed, family, width, name,
shape), so within one supernet the same initializer name gives the same bytes
in every subnet's graph (the export cache stores it once), and every run
exports the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np

from compofa.errors import SpecError
from compofa.graphs.onnx_graph import Parameter, Weights
from compofa.space import Family, SubnetSpec, get_family, get_space
from compofa.space.plan import NetworkPlan, plan_subnet

#: Bump whenever the arrays drawn for a name change (it is part of every fingerprint).
GENERATOR_VERSION = 1

#: Spread of the biases (a folded BatchNorm's shift) relative to the output's.
BIAS_STD = 0.1


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """float32 values of mean 0 and standard deviation `std`, uniform on ``[-sqrt(3) std, sqrt(3) std)``."""
    values = rng.random(shape, dtype=np.float32)
    values -= np.float32(0.5)
    values *= np.float32(2.0 * math.sqrt(3.0) * std)
    return values


class SeededWeights:
    """Seeded weights of every subnet of one family at one width, used when there is no checkpoint.

    Implements `compofa.graphs.onnx_graph.Weights` (call it with a `Parameter`)
    and the export cache's `compofa.graphs.cache.NetworkWeights`.

    Attributes:
        fingerprint: a hash of (seed, family, width, generator version): all that decides the arrays.
    """

    def __init__(self, family: Family | str, width: float, seed: int = 0) -> None:
        family = get_family(family) if isinstance(family, str) else family
        family.check_width(width)
        self.family = family
        self.width = float(width)
        self.seed = seed
        identity = json.dumps(["seeded", GENERATOR_VERSION, seed, family.name, self.width])
        self.fingerprint = hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()
        self._drawn: dict[tuple[object, ...], tuple[np.ndarray, np.ndarray | None]] = {}

    def __repr__(self) -> str:
        return f"SeededWeights({self.family.name}, width={self.width:g}, seed={self.seed})"

    def describe(self) -> str:
        """What the weights are, for run records: the generator and the seed."""
        return f"seeded (generator {GENERATOR_VERSION}, seed {self.seed})"

    def __call__(self, parameter: Parameter, /) -> tuple[np.ndarray, np.ndarray | None]:
        # Subnets share most of their layers, so the arrays of a name are drawn once and kept (read-only):
        # exporting all 243 CompOFA subnets otherwise spends half its time drawing the same numbers again.
        # They are a supernet's worth at most (tens of MB).
        memo = (parameter.name, parameter.shape, parameter.fan_in, parameter.input_moment, parameter.output_moment,
                parameter.has_bias)
        arrays = self._drawn.get(memo)
        if arrays is None:
            arrays = self._draw(parameter)
            for array in arrays:
                if array is not None:
                    array.flags.writeable = False
            self._drawn[memo] = arrays
        return arrays

    def _draw(self, parameter: Parameter) -> tuple[np.ndarray, np.ndarray | None]:
        rng = np.random.default_rng(self._stream(parameter))
        spread = math.sqrt(parameter.output_moment / (parameter.fan_in * parameter.input_moment))
        weight = _uniform(rng, parameter.shape, spread)
        if not parameter.has_bias:
            return weight, None
        return weight, _uniform(rng, (parameter.shape[0],), BIAS_STD * math.sqrt(parameter.output_moment))

    def _stream(self, parameter: Parameter) -> int:
        """The seed of `parameter`'s arrays: a hash of the weights' fingerprint, its name and shape."""
        identity = json.dumps([self.fingerprint, parameter.name, list(parameter.shape)])
        return int.from_bytes(hashlib.blake2b(identity.encode(), digest_size=16).digest(), "little")

    # -- what the export cache asks (NetworkWeights) --------------------------------------------

    def plan(self, spec: SubnetSpec) -> NetworkPlan:
        """The plan of `spec` at this width; a spec of another family is an error."""
        family = get_space(spec.space).family
        if family != self.family:
            raise SpecError(f"spec of space {spec.space!r} ({family.name}) is no {self.family.name} subnet")
        return plan_subnet(spec, self.width)

    def subnet_weights(self, spec: SubnetSpec) -> Weights:
        return self  # one array per name, whatever subnet holds it

    def metadata(self) -> dict[str, str]:
        return {"compofa.width": f"{self.width:g}", "compofa.weights": self.fingerprint,
                "compofa.seed": str(self.seed)}
