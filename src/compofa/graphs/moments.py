"""Second moments of activations in a network kept at a steady scale, as seeded weights need them.

In a trained network BatchNorm sets the spread of every conv output; a graph
with seeded weights has no BatchNorm (it is folded), so its weights must do the
same: a conv reading an input of second moment ``m`` whose output should have
second moment ``t`` gets weights of spread ``sqrt(t / (fan_in * m))``. The graph
writer follows the second moment of every input through the network with the
figures below (for a normal pre-activation of the chosen spread) and records
both on each `Parameter`. Global pooling keeps the second moment: the mean of
a map's channel is no larger than the map (Jensen), and in these networks the
channels' means make up most of it.

The spread before each activation is 1, except before h_swish: near unit
scale ``E[h_swish(s z)**2] / s**2`` rises steeply with ``s`` (from 1/4 to 1/2),
so an output a little too large comes out of the activation larger still and
the error grows layer after layer (by 1e4 over MobileNetV3's h_swish stages).
At spread 4 h_swish acts as a ReLU, its output second moment proportional to
its input's, and small errors stay small.
"""

from __future__ import annotations

#: The spread (rms) a conv's output is given before each activation; None: a linear output.
PRE_ACTIVATION_RMS: dict[str | None, float] = {None: 1.0, "relu": 1.0, "relu6": 1.0, "h_swish": 4.0}
#: ``E[a(s z)**2]`` for ``z ~ N(0, 1)`` and ``s`` the activation's `PRE_ACTIVATION_RMS`.
ACTIVATION_MOMENTS: dict[str | None, float] = {
    None: 1.0,
    "relu": 0.5,
    "relu6": 0.5,  # clipping at 6 changes it by under 1e-8
    "h_swish": 7.840521,
}
#: ``E[hard_sigmoid(z)**2]``: how much a squeeze-excite gate scales the second moment of what it gates.
GATE_MOMENT = 0.277639


def pre_activation(activation: str | None) -> float:
    """The second moment a conv's output is given when `activation` follows it."""
    return PRE_ACTIVATION_RMS[activation] ** 2


def activated(activation: str | None) -> float:
    """The second moment of a conv output of `pre_activation(activation)` after `activation`."""
    return ACTIVATION_MOMENTS[activation]
