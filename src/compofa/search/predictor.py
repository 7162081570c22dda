"""Accuracy for search: OFA's accuracy predictor, measured accuracies, and the encoding.

Search scores thousands of subnets per generation, so accuracy comes from an
`AccuracySource` that answers a whole `ArchBatch` at once:

- `PredictorAccuracy`: an MLP accuracy predictor. The shipped one is Once-for-All's
  (docs/architecture.md, "OFA's accuracy predictor"), fitted on OFA MobileNetV3 w1.2
  subnets; the CompOFA paper used it for every platform. Inference is a few numpy
  matmuls; files are read without torch (compofa.torchfile), which is imported only to write or train one.
- `TableAccuracy`: top-1 measured by evaluation, read from a table's accuracy rows.

The encoding (`encode`) is OFA's ``spec2feats`` (ofa/tutorial/accuracy_predictor.py)
made generic over a model family and vectorized: for every block of the supernet
a one-hot of its kernel size, then for every block a one-hot of its expand ratio
(blocks a stage's depth leaves out are all zeros), then a one-hot of
``(R - 112) // 16`` over 8 slots. MobileNetV3 (20 blocks, kernels 3/5/7, expand
ratios 3/4/6) gives the 128 inputs of OFA's predictor; ProxylessNAS (21 blocks)
gives 134, so a predictor trained for it has 134 inputs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from compofa import torchfile
from compofa.errors import CompofaError, SpecError
from compofa.fileio import atomic_output
from compofa.search.arrays import ArchBatch
from compofa.space import Family, SubnetSpec, get_family, get_space, list_families, parse_spec
from compofa.space.registry import EXPANDS

if TYPE_CHECKING:  # torch is needed to read, write and train predictors, never to predict
    import torch


class AccuracyError(CompofaError):
    """An accuracy source cannot answer (unknown source, subnet without a measured accuracy)."""


class PredictorError(AccuracyError):
    """A predictor file or predictor that is malformed or does not fit the subnets asked about."""


#: OFA's encoding of the input resolution: one-hot of (R - 112) // 16 over 8 slots.
RESOLUTION_BASE = 112
RESOLUTION_STEP = 16
RESOLUTION_SLOTS = 8
#: Expand ratios of OFA's encoding (``ex_map`` of the reference code), shared by every family.
EXPAND_CHOICES: tuple[int, ...] = EXPANDS
#: The shipped predictor, inside the package (see compofa/data/NOTICE).
SHIPPED_RESOURCE = "ofa_acc_predictor/acc_predictor.pth"
SHIPPED_FAMILY = "mobilenetv3"
SHIPPED_WIDTH = 1.2
SHIPPED_LABEL = "the shipped OFA accuracy predictor"

_FIX_FILE = "save one with AccuracyPredictor.save or torch.save(model.state_dict())"


# -- the encoding ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoding:
    """The predictor input layout of one model family.

    Attributes:
        family: the family's registry name.
        kernel_sizes: kernel choices, in one-hot order (ascending).
        expand_ratios: expand-ratio choices, in one-hot order (ascending).
        num_blocks: elastic blocks of the supernet (20 for MobileNetV3, 21 for ProxylessNAS).
    """

    family: str
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[int, ...]
    num_blocks: int

    @classmethod
    def of_family(cls, family: Family) -> Encoding:
        return cls(family.name, tuple(sorted(family.kernel_sizes)), tuple(sorted(EXPAND_CHOICES)), family.num_blocks)

    @property
    def size(self) -> int:
        """Inputs of a predictor for this family: 128 for MobileNetV3."""
        return self.num_blocks * (len(self.kernel_sizes) + len(self.expand_ratios)) + RESOLUTION_SLOTS

    def encode(self, batch: ArchBatch) -> np.ndarray:
        """(N, size) float32 encoding of every row of `batch` (see `encode`)."""
        family = get_space(batch.space).family.name
        if family != self.family:
            raise PredictorError(f"the {self.family} encoding cannot encode space {batch.space!r} ({family} family)")
        active = batch.active()  # as spec2feats, zero blocks beyond a stage's depth whatever they hold
        kernels = _one_hot(batch.kernel, active, self.kernel_sizes, "kernel size")
        expands = _one_hot(batch.expand, active, self.expand_ratios, "expand ratio")
        return np.concatenate([kernels, expands, resolution_slots(batch.resolution)], axis=1)


def encoding_of(space: str) -> Encoding:
    """The encoding of the family of design space `space`."""
    return Encoding.of_family(get_space(space).family)


def encode(batch: ArchBatch) -> np.ndarray:
    """Encode `batch` as OFA's accuracy predictor reads it: (N, inputs) float32.

    Per block a one-hot of the kernel size, then per block a one-hot of the
    expand ratio (inactive blocks all zeros), then a one-hot of
    ``(R - 112) // 16`` over 8 slots.
    MobileNetV3 spaces give 128 inputs; ProxylessNAS spaces 21 * 6 + 8 = 134.

    Raises:
        PredictorError: a resolution outside 112..239, or a kernel size or
            expand ratio the encoding has no slot for.
    """
    return encoding_of(batch.space).encode(batch)


def _one_hot(values: np.ndarray, active: np.ndarray, choices: tuple[int, ...], what: str) -> np.ndarray:
    hot = (values[:, :, None] == np.asarray(choices)[None, None, :]) & active[:, :, None]
    unknown = active & ~hot.any(axis=2)
    if unknown.any():
        row, block = (int(i) for i in np.argwhere(unknown)[0])
        raise PredictorError(
            f"row {row} block {block} has {what} {int(values[row, block])}, which the predictor encoding "
            f"has no slot for (choices {list(choices)})"
        )
    return hot.reshape(values.shape[0], -1).astype(np.float32)


def resolution_slots(resolution: np.ndarray) -> np.ndarray:
    """(N, 8) float32 one-hot of ``(R - 112) // 16``; R outside 112..239 is an error."""
    values = np.asarray(resolution).astype(np.int64)
    high = RESOLUTION_BASE + RESOLUTION_STEP * RESOLUTION_SLOTS
    outside = (values < RESOLUTION_BASE) | (values >= high)
    if outside.any():
        raise PredictorError(
            f"resolution {int(values[outside][0])} is outside the accuracy predictor's range "
            f"{RESOLUTION_BASE}..{high - 1}; choose a resolution in it"
        )
    slots = np.zeros((values.shape[0], RESOLUTION_SLOTS), dtype=np.float32)
    slots[np.arange(values.shape[0]), (values - RESOLUTION_BASE) // RESOLUTION_STEP] = 1.0
    return slots


# -- the predictor ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingStats:
    """How a predictor trained by `train_predictor` fits its data (top-1 fractions)."""

    train_rmse: float
    validation_rmse: float | None
    train_size: int
    validation_size: int
    epochs: int
    seed: int


class AccuracyPredictor:
    """An MLP accuracy predictor held as numpy arrays: Linear-ReLU-...-Linear(., 1).

    The layers are those of an ``nn.Sequential`` of Linear and ReLU (state_dict
    keys ``0.*``, ``2.*``, ...), with any hidden width and number of hidden
    layers. It scores the subnets of one model family; its input size must be
    that family's `Encoding` size. Output: ImageNet top-1 as a fraction.

    Attributes:
        family: the model family the predictor scores.
        fitted_width: the width multiplier of the networks it was fitted on, when known.
        label: where it came from, for messages.
        training: fit statistics when it was made by `train_predictor`.
    """

    def __init__(
        self,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        family: str = SHIPPED_FAMILY,
        *,
        fitted_width: float | None = None,
        label: str = "accuracy predictor",
        training: TrainingStats | None = None,
    ) -> None:
        self.label = label
        self.weights, self.biases = _checked_layers(weights, biases, label)
        self.family = get_family(family).name
        self.encoding = Encoding.of_family(get_family(family))
        if self.input_size != self.encoding.size:
            raise PredictorError(
                f"{label} takes {self.input_size} inputs but the {self.family} encoding has "
                f"{self.encoding.size}: it was trained for another design space"
            )
        self.fitted_width = fitted_width
        self.training = training
        # Row-major (in, out) copies for the matmuls of `predict`.
        self._transposed = tuple(np.ascontiguousarray(w.T) for w in self.weights)

    @property
    def input_size(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return tuple(int(w.shape[0]) for w in self.weights[:-1])

    def __repr__(self) -> str:
        return f"AccuracyPredictor({self.label!r}, {self.family}, {self.input_size} -> {list(self.hidden_sizes)} -> 1)"

    # -- prediction ---------------------------------------------------------------------

    def check_space(self, space: str) -> None:
        """Raise `PredictorError` unless this predictor scores the subnets of `space`.

        The family must match and the space's encoding size must equal the
        predictor's input size.
        """
        family = get_space(space).family
        if family.name != self.family:
            raise PredictorError(
                f"{self.label} scores {self.family} subnets, not those of space {space!r} ({family.name}): "
                "train a predictor for that family (train_predictor) and give predictor:PATH"
            )
        size = encoding_of(space).size
        if size != self.input_size:
            raise PredictorError(
                f"{self.label} takes {self.input_size} inputs but space {space!r} encodes to {size}: "
                "give a predictor trained on that space's encoding"
            )

    def predict(self, batch: ArchBatch) -> np.ndarray:
        """Predicted top-1 (fractions, float64) of every row of `batch`.

        A batch does not carry the width multiplier: scoring w1.0 subnets with
        a predictor fitted on w1.2 (the shipped one) is the caller's modelling
        choice; `PredictorAccuracy` reports it in its warnings.
        """
        self.check_space(batch.space)
        return self.predict_encoded(self.encoding.encode(batch))

    def predict_encoded(self, features: np.ndarray) -> np.ndarray:
        """Predicted top-1 of already encoded rows, (N, inputs) -> (N,)."""
        hidden = np.asarray(features, dtype=np.float32)
        if hidden.ndim != 2 or hidden.shape[1] != self.input_size:
            raise PredictorError(f"{self.label} takes (N, {self.input_size}) features, got {hidden.shape}")
        last = len(self._transposed) - 1
        for index, (weight, bias) in enumerate(zip(self._transposed, self.biases)):
            hidden = hidden @ weight
            hidden += bias
            if index < last:
                np.maximum(hidden, 0.0, out=hidden)
        return hidden[:, 0].astype(np.float64)

    # -- files ------------------------------------------------------------------------------

    @classmethod
    def shipped(cls) -> AccuracyPredictor:
        """OFA's accuracy predictor for MobileNetV3 w1.2 subnets, shipped with compofa.

        It was fitted on ImageNet top-1 of OFA MobileNetV3 subnets at width 1.2;
        the CompOFA paper used it for every platform. Scoring w1.0
        subnets with it is the caller's modelling choice. Read once and shared.
        """
        return _shipped()

    @classmethod
    def load(cls, path: str | os.PathLike[str], family: str | None = None) -> AccuracyPredictor:
        """Read a predictor file (a state_dict of an nn.Sequential of Linear and ReLU).

        `family` defaults to the one family whose encoding size equals the
        file's input size.

        Raises:
            PredictorError: missing or unreadable file, not a state_dict, wrong
                keys or shapes, or an input size that fits no (or not `family`'s) encoding.
        """
        target = Path(path)
        label = f"predictor file {str(target)!r}"
        if not target.is_file():
            what = "is a directory; give the file itself" if target.is_dir() else "does not exist; check the path"
            raise PredictorError(f"{label} {what}")
        try:
            data = target.read_bytes()
        except OSError as error:
            raise PredictorError(f"cannot read {label}: {error.strerror}") from None
        return cls.from_state_dict(_torch_load(data, label), family, label=label)

    @classmethod
    def from_state_dict(
        cls, state: Any, family: str | None = None, *, label: str = "accuracy predictor",
        fitted_width: float | None = None,
    ) -> AccuracyPredictor:
        """A predictor from an nn.Sequential state_dict (tensors or arrays), checked."""
        weights, biases = _state_layers(state, label)
        chosen = family if family is not None else _family_for_inputs(int(weights[0].shape[-1]), label)
        return cls(weights, biases, chosen, fitted_width=fitted_width, label=label)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The nn.Sequential state_dict (keys ``0.weight``, ``0.bias``, ``2.weight``, ...)."""
        import torch

        state: dict[str, torch.Tensor] = {}
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            state[f"{2 * index}.weight"] = torch.from_numpy(weight.copy())
            state[f"{2 * index}.bias"] = torch.from_numpy(bias.copy())
        return state

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state_dict atomically; `torch.load(path, weights_only=True)` reads it back."""
        import torch

        with atomic_output(path) as handle:
            torch.save(self.state_dict(), handle)


def _checked_layers(
    weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], label: str
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Read-only float32 copies of the layers, after checking that they chain to one output."""
    if not weights or len(weights) != len(biases):
        raise PredictorError(f"{label} needs as many biases as weights and at least one layer; {_FIX_FILE}")
    checked_w, checked_b = [], []
    inputs = None
    for index, (weight, bias) in enumerate(zip(weights, biases)):
        w, b = np.array(weight, dtype=np.float32), np.array(bias, dtype=np.float32)
        key = f"{2 * index}"
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise PredictorError(
                f"{label} layer {key} has weight {w.shape} and bias {b.shape}, not a Linear layer; {_FIX_FILE}"
            )
        if inputs is not None and w.shape[1] != inputs:
            raise PredictorError(
                f"{label} layer {key} takes {w.shape[1]} inputs but the layer before gives {inputs}; {_FIX_FILE}"
            )
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise PredictorError(f"{label} layer {key} holds NaN or infinite values; retrain or re-export it")
        inputs = w.shape[0]
        w.setflags(write=False)
        b.setflags(write=False)
        checked_w.append(w)
        checked_b.append(b)
    if inputs != 1:
        raise PredictorError(f"{label} ends with {inputs} outputs; an accuracy predictor has one (top-1)")
    return tuple(checked_w), tuple(checked_b)


def _state_layers(state: Any, label: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The weights and biases of an nn.Sequential state_dict of Linear/ReLU (keys 0, 2, 4, ...)."""
    if not isinstance(state, Mapping):
        raise PredictorError(f"{label} holds a {type(state).__name__}, not a state_dict; {_FIX_FILE}")
    if not state:
        raise PredictorError(f"{label} holds an empty state_dict; {_FIX_FILE}")
    count = sum(1 for key in state if isinstance(key, str) and key.endswith(".weight"))
    expected = [f"{2 * i}.{part}" for i in range(count) for part in ("weight", "bias")]
    if count == 0 or set(state) != set(expected):
        unexpected = sorted(str(key) for key in set(state) - set(expected))
        missing = sorted(set(expected) - set(state))
        detail = f"unexpected keys {unexpected[:3]}" if unexpected else f"missing keys {missing[:3]}"
        raise PredictorError(
            f"{label} is not an nn.Sequential state_dict of Linear/ReLU layers (keys 0.*, 2.*, ...): "
            f"{detail}; {_FIX_FILE}"
        )
    arrays = {key: _as_array(value, key, label) for key, value in state.items()}
    return [arrays[f"{2 * i}.weight"] for i in range(count)], [arrays[f"{2 * i}.bias"] for i in range(count)]


def _as_array(value: Any, key: str, label: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        raise PredictorError(f"{label} entry {key!r} is not a floating-point tensor; {_FIX_FILE}")
    return value


def _torch_load(data: bytes, label: str) -> Any:
    """The state_dict in a `torch.save` file, as numpy arrays; read without torch, so search needs none."""
    try:
        return torchfile.load(data)
    except torchfile.TorchFileError as error:
        raise PredictorError(f"cannot read {label}: {error}; {_FIX_FILE}") from None


def _family_for_inputs(inputs: int, label: str) -> str:
    sizes = {family.name: Encoding.of_family(family).size for family in list_families()}
    matches = [name for name, size in sizes.items() if size == inputs]
    if len(matches) != 1:
        known = ", ".join(f"{name}: {size}" for name, size in sizes.items())
        raise PredictorError(
            f"{label} takes {inputs} inputs, which fits {'no' if not matches else 'more than one'} family's "
            f"encoding ({known}); give a predictor trained on the encoding of its design space"
        )
    return matches[0]


@lru_cache(maxsize=1)
def _shipped() -> AccuracyPredictor:
    resource = resources.files("compofa.data").joinpath(SHIPPED_RESOURCE)
    state = _torch_load(resource.read_bytes(), SHIPPED_LABEL)
    return AccuracyPredictor.from_state_dict(state, SHIPPED_FAMILY, label=SHIPPED_LABEL, fitted_width=SHIPPED_WIDTH)


# -- training ------------------------------------------------------------------------------


def train_predictor(
    specs: Sequence[SubnetSpec] | ArchBatch,
    accuracies: Sequence[float] | np.ndarray,
    hidden: int = 400,
    layers: int = 3,
    epochs: int = 100,
    seed: int = 0,
    *,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    validation_fraction: float = 0.2,
    fitted_width: float | None = None,
) -> AccuracyPredictor:
    """Fit a new predictor of OFA's architecture on (subnet, top-1 fraction) pairs.

    The network is ``layers`` Linear(hidden)-ReLU layers and a Linear(hidden, 1),
    as OFA's predictor (3 x 400), trained with Adam on the mean
    squared error, on CPU (torch is imported here). The split, the
    initialization and the batch order all follow `seed` (the global torch RNG
    is restored afterwards): the same seed and thread count give the same weights.

    Args:
        specs: the subnets (all of one space), or an `ArchBatch` of them.
        accuracies: their measured top-1, as fractions in [0, 1].
        hidden, layers: width and number of hidden layers.
        epochs, seed, batch_size, learning_rate: the optimization.
        validation_fraction: share of the pairs held out (drawn with `seed`);
            their RMSE is `training.validation_rmse` (None when 0).
        fitted_width: width multiplier of the measured networks, for `describe`.

    Returns:
        The predictor, with its fit statistics in `training` (not saved in files).
    """
    batch = specs if isinstance(specs, ArchBatch) else _batch_of(specs)
    if len(batch) == 0:
        raise PredictorError("no training samples: give at least a few hundred (subnet, top-1) pairs")
    targets = _checked_targets(accuracies, len(batch))
    _check_training_settings(hidden, layers, epochs, batch_size, validation_fraction)
    features = encode(batch)
    train_rows, validation_rows = _split(len(batch), validation_fraction, seed)
    state = _fit(features[train_rows], targets[train_rows], hidden, layers, epochs, seed, batch_size, learning_rate)
    family = get_space(batch.space).family.name
    label = f"predictor trained on {len(train_rows)} subnets of {batch.space}"
    fitted = AccuracyPredictor.from_state_dict(state, family, label=label, fitted_width=fitted_width)
    validation_rmse = (
        _rmse(fitted, features[validation_rows], targets[validation_rows]) if len(validation_rows) else None
    )
    stats = TrainingStats(
        _rmse(fitted, features[train_rows], targets[train_rows]), validation_rmse,
        len(train_rows), len(validation_rows), epochs, seed,
    )
    return AccuracyPredictor(
        fitted.weights, fitted.biases, family, fitted_width=fitted_width, label=label, training=stats
    )


def _split(count: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): a random `validation_fraction` of `count` held out."""
    order = np.random.default_rng(seed).permutation(count)
    validation_size = int(round(count * validation_fraction))
    if count - validation_size < 1:
        raise PredictorError(f"{count} samples leave none to train on; give more or lower validation_fraction")
    return order[validation_size:], order[:validation_size]


def _batch_of(specs: Sequence[SubnetSpec]) -> ArchBatch:
    specs = list(specs)
    if not specs:
        raise PredictorError("no training samples: give at least a few hundred (subnet, top-1) pairs")
    return ArchBatch.from_specs(specs)


def _checked_targets(accuracies: Sequence[float] | np.ndarray, count: int) -> np.ndarray:
    targets = np.asarray(accuracies, dtype=np.float64).reshape(-1)
    if targets.shape[0] != count:
        raise PredictorError(f"{targets.shape[0]} accuracies for {count} subnets; give one per subnet")
    if not np.isfinite(targets).all() or targets.min() < 0.0 or targets.max() > 1.0:
        worst = targets[~np.isfinite(targets) | (targets < 0) | (targets > 1)][0]
        raise PredictorError(f"accuracies must be top-1 fractions in [0, 1]; got {worst} (percent? divide by 100)")
    return targets


def _check_training_settings(
    hidden: int, layers: int, epochs: int, batch_size: int, validation_fraction: float
) -> None:
    for name, value in (("hidden", hidden), ("layers", layers), ("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"train_predictor {name} must be a positive int, got {value!r}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"train_predictor validation_fraction must be in [0, 1), got {validation_fraction!r}")


def _fit(
    features: np.ndarray, targets: np.ndarray, hidden: int, layers: int, epochs: int, seed: int,
    batch_size: int, learning_rate: float,
) -> dict[str, torch.Tensor]:
    """Train an nn.Sequential on CPU; returns its state_dict, predicting top-1 fractions.

    The network learns standardized targets: accuracies spread over a few
    points, far below the output scale of a freshly initialized network, and
    on the raw scale it fits the noise rather than the trend (validation RMSE
    about 5x worse on synthetic data). Mean and scale are folded back into the
    last layer, so the file is an ordinary predictor of fractions.
    """
    import torch
    from torch import nn

    offset = float(targets.mean())
    scale = float(targets.std()) or 1.0
    inputs = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    goal = torch.from_numpy(((targets - offset) / scale).astype(np.float32))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _mlp(inputs.shape[1], hidden, layers)
        order = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        for _ in range(epochs):
            for rows in torch.randperm(len(goal), generator=order).split(batch_size):
                optimizer.zero_grad()
                loss = nn.functional.mse_loss(model(inputs[rows]).squeeze(1), goal[rows])
                loss.backward()
                optimizer.step()
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    state[f"{2 * layers}.weight"] *= scale
    state[f"{2 * layers}.bias"] = state[f"{2 * layers}.bias"] * scale + offset
    return state


def _mlp(inputs: int, hidden: int, layers: int) -> torch.nn.Sequential:
    from torch import nn

    modules: list[nn.Module] = []
    width = inputs
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    modules.append(nn.Linear(width, 1))
    return nn.Sequential(*modules)


def _rmse(predictor: AccuracyPredictor, features: np.ndarray, targets: np.ndarray) -> float:
    return float(math.sqrt(np.mean((predictor.predict_encoded(features) - targets) ** 2)))


# -- accuracy sources ------------------------------------------------------------------------


@runtime_checkable
class AccuracySource(Protocol):
    """What search asks for accuracy: top-1 fractions of a whole batch."""

    @property
    def name(self) -> str:
        """The source in its CLI form (``predictor``, ``predictor:PATH``, ``table:PATH``)."""
        ...

    def accuracy(self, batch: ArchBatch) -> np.ndarray:
        """(N,) float64 top-1 fractions of the rows of `batch`."""
        ...

    def describe(self) -> str:
        """One line saying where the numbers come from."""
        ...


class PredictorAccuracy:
    """Accuracy from an `AccuracyPredictor`.

    `space` (checked at once when given) and `width` describe the subnets to be
    scored; a width other than the one the predictor was fitted on is allowed
    (a modelling choice) and reported in `warnings` and `describe`.
    """

    def __init__(
        self, predictor: AccuracyPredictor, space: str | None = None, width: float | None = None,
        name: str = "predictor",
    ) -> None:
        if space is not None:
            predictor.check_space(space)
        self.predictor, self.space, self.width = predictor, space, width
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def warnings(self) -> tuple[str, ...]:
        fitted, width = self.predictor.fitted_width, self.width
        if fitted is None or width is None or math.isclose(fitted, width):
            return ()
        return (f"{self.predictor.label} was fitted on w{fitted:g} subnets; it scores w{width:g} ones here",)

    def accuracy(self, batch: ArchBatch) -> np.ndarray:
        return self.predictor.predict(batch)

    def describe(self) -> str:
        predictor = self.predictor
        if predictor.label == SHIPPED_LABEL:
            text = (f"OFA accuracy predictor for {predictor.family} w{SHIPPED_WIDTH:g} (shipped; "
                    "the CompOFA paper used it for every platform)")
        else:
            text = f"{predictor.label} ({predictor.family}, {predictor.input_size} inputs)"
        return "; ".join((text,) + self.warnings)


#: The accuracy rows a search at each precision reads. fp16 runs the fp32 network's weights rounded to half
#: precision, which moves top-1 by far less than evaluation resolves, so it is scored by the fp32 rows; int8
#: changes the network (quantized weights, clipped activation ranges) and is scored by its own rows.
ACCURACY_PRECISION = {"fp32": "fp32", "fp16": "fp32", "int8": "int8"}


class TableAccuracy:
    """Measured top-1 of the subnets of `space` at `width`, from a table's accuracy rows (`compofa.tables.accuracy`).

    The rows are read once, when the source is made. `weights` names the
    supernet weights the accuracies were measured with; it may be left out when
    the table holds only one. `precision` is the precision searched: its rows
    are read (`ACCURACY_PRECISION`), so an int8 search scores what int8 ships. A
    subnet without a row is an `AccuracyError`.
    """

    def __init__(
        self, path: str | os.PathLike[str], space: str, width: float | None = None, weights: str | None = None,
        precision: str = "fp32",
    ) -> None:
        design = get_space(space)
        self.path, self.space, self.weights = Path(path), space, weights
        self.width = design.family.default_width if width is None else float(width)
        if precision not in ACCURACY_PRECISION:
            raise AccuracyError(f"no accuracy rows serve precision {precision!r}; precisions: "
                                f"{', '.join(ACCURACY_PRECISION)}", option="precision")
        self.precision = ACCURACY_PRECISION[precision]
        from compofa.tables.store import LatencyTable  # the store loads only for measured accuracy

        with LatencyTable.open(self.path) as table:
            rows = table.accuracy.top1(space, self.width, weights, self.precision)
            held = sorted({(row.precision, row.width) for row in table.accuracy.rows(space)}) if not rows else []
        if not rows:
            others = (" (it holds " + ", ".join(f"{p} rows at width {w:g}" for p, w in held) + ")") if held else ""
            how = " --precision int8" if self.precision == "int8" else ""
            raise AccuracyError(
                f"table {str(self.path)!r} holds no measured {self.precision} accuracy for space {space!r} at width "
                f"{self.width:g}{f' with weights {weights!r}' if weights else ''}{others}: measure them with "
                f"`compofa eval{how}`, or use the predictor", option="accuracy",
            )
        self._by_key = _accuracy_by_key(rows, space, self.path)

    @property
    def name(self) -> str:
        return f"table:{self.path}"

    def __len__(self) -> int:
        return len(self._by_key)

    def accuracy(self, batch: ArchBatch) -> np.ndarray:
        if batch.space != self.space:
            raise AccuracyError(f"table accuracies are for space {self.space!r}, not {batch.space!r}")
        found = [self._by_key.get(key) for key in batch.keys()]
        for row, value in enumerate(found):
            if value is None:
                raise AccuracyError(
                    f"table {str(self.path)!r} has no measured {self.precision} accuracy for {batch.spec(row)} at "
                    f"width {self.width:g}: measure it with `compofa eval`, or use --accuracy predictor"
                )
        return np.array(found, dtype=np.float64)

    def describe(self) -> str:
        weights = f", weights {self.weights}" if self.weights else ""
        return (f"measured {self.precision} top-1 of {len(self)} subnets of {self.space} w{self.width:g}{weights} "
                f"from table {str(self.path)!r}")


def _accuracy_by_key(rows: Mapping[str, float], space: str, path: Path) -> dict[bytes, float]:
    """Measured accuracies keyed as `ArchBatch.keys` (so a batch looks up without building specs)."""
    texts = sorted(rows)
    specs = []
    for text in texts:
        try:
            specs.append(parse_spec(text))
        except SpecError as error:
            raise AccuracyError(f"table {str(path)!r} has an accuracy row with a bad spec {text!r}: {error}") from None
    keys = ArchBatch.from_specs(specs).keys()
    return {key: rows[text] for key, text in zip(keys, texts)}


def accuracy_source(
    text: str, space: str, width: float | None = None, weights: str | None = None, precision: str = "fp32"
) -> AccuracySource:
    """The accuracy source the CLI form `text` names, for subnets of `space` at `width` searched at `precision`.

    ``predictor``: the shipped OFA predictor (MobileNetV3 w1.2); ``predictor:PATH``:
    a predictor file; ``table:PATH``: measured accuracies in a table, the rows of
    `precision` (see `TableAccuracy`). A predictor knows one precision, the one
    its training rows were measured at.
    """
    kind, colon, argument = text.strip().partition(":")
    if kind not in ("predictor", "table"):
        raise AccuracyError(f"unknown accuracy source {text!r}: use predictor, predictor:PATH or table:PATH")
    if colon and not argument:
        raise AccuracyError(f"accuracy source {text!r} names no file: give {kind}:PATH")
    if kind == "table":
        if not colon:
            raise AccuracyError("accuracy source 'table' needs a file: give table:PATH")
        return TableAccuracy(argument, space, width, weights, precision)
    if not colon:
        return PredictorAccuracy(AccuracyPredictor.shipped(), space, width, name="predictor")
    predictor = AccuracyPredictor.load(argument, get_space(space).family.name)
    return PredictorAccuracy(predictor, space, width, name=f"predictor:{argument}")
