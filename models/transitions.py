"""Transitions p(z_t | z_{t−1}) of a state-space model (``transition=...``): modules that map
the previous state, ``(..., z_dim)``, to a Pyro distribution over the next with event dim 1.

- :class:`NeuralTransition` (``transition=neural``): the gated transition of the deep Markov
  model (Krishnan, Shalit & Sontag 2017), a learned mix of a linear map and an MLP, with a
  noise scale that depends on the state.
- :class:`LinearTransition` (``transition=linear``): z_t = A z_{t−1} + b + ε, ε ~ N(0, diag q²);
  with a linear-Gaussian emission the model's log p(x₁:T) is exact by a Kalman filter.
- :class:`~models.physics.PhysicsTransition` (``transition=physics``, in :mod:`models.physics`).

What a state-space model asks of a transition (:class:`Transition`): ``begin()``, called once
per batch of sequences inside the data plate, samples whatever the transition keeps per
sequence (the physics transition's drive phase) and returns the step, ``step(z, t)``, the
distribution of the state of frame t + 1 given z, that of frame t (0-based); ``emission(z)``,
what the decoder reads of a state (``emission_dim`` features); ``angles``, the coordinates of the
state that are angles, which a guide reads as directions.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

import pyro.distributions as dist

__all__ = ["LinearTransition", "NeuralTransition", "Transition", "nearest_turn"]


def nearest_turn(angle: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``angle`` moved by whole turns to lie within π of ``reference``: the same direction on the
    branch a state's unwrapped angle (the pendulum's θ, which may have turned over) is on."""
    return reference + torch.remainder(angle - reference + math.pi, 2 * math.pi) - math.pi


def _check(name: str, **sizes) -> None:
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {key} must be a positive integer, got {value!r}")


class Transition(nn.Module):
    """A transition that keeps nothing per sequence and lets the decoder read the whole state:
    ``step(z, t)`` is ``self(z)`` whatever t."""

    sequence_latents: dict[str, int] = {}  #: per-sequence sample sites ``begin`` draws: name → size
    angles: tuple[int, ...] = ()  #: coordinates of the state that are angles (read through cos and sin)
    learns_constants = False  #: ``constants()`` gives the simulator's constants by name, as learned
    intervenable: tuple[str, ...] = ()  #: per-sequence sites ``begin`` records that an intervention may set

    @property
    def emission_dim(self) -> int:
        return self.z_dim

    def emission(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def begin(self):
        return lambda z, t: self(z)

    def mean(self, z: torch.Tensor, t, latents: dict) -> torch.Tensor:
        """The mean of the state of frame t + 1 given z, that of frame t, and the sequence's own
        latents by name: what a guide that follows the transition proposes around."""
        return self(z).mean


class NeuralTransition(Transition):
    """The DMM's gated transition: loc = (1 − g) ⊙ (A z + b) + g ⊙ MLP(z), with the gate
    g = σ(MLP'(z)), and scale = softplus(W relu(MLP(z))) + floor. A starts as the identity, so
    that an untrained model carries its state forward.

    :param int hidden: the width of the gate's and the proposed mean's hidden layers.
    :param float scale_floor: the smallest noise scale.
    """

    def __init__(self, z_dim: int, hidden: int = 64, scale_floor: float = 1e-3):
        super().__init__()
        _check("NeuralTransition", z_dim=z_dim, hidden=hidden)
        self.z_dim, self.scale_floor = z_dim, scale_floor
        self.gate = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, z_dim), nn.Sigmoid())
        self.proposed = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, z_dim))
        self.linear = nn.Linear(z_dim, z_dim)
        self.scale = nn.Linear(z_dim, z_dim)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(z_dim))
            self.linear.bias.zero_()

    def forward(self, z: torch.Tensor) -> dist.TorchDistribution:
        gate, proposed = self.gate(z), self.proposed(z)
        loc = (1 - gate) * self.linear(z) + gate * proposed
        scale = F.softplus(self.scale(F.relu(proposed))) + self.scale_floor
        return dist.Normal(loc, scale).to_event(1)


class LinearTransition(Transition):
    """z_t ~ N(A z_{t−1} + b, diag q²), with A, b and q learned (A from the identity, b from 0,
    q from ``initial_scale``).

    :param float initial_scale: the process noise's scale before training.
    """

    def __init__(self, z_dim: int, initial_scale: float = 0.3):
        super().__init__()
        _check("LinearTransition", z_dim=z_dim)
        if not initial_scale > 0:
            raise ValueError(f"LinearTransition: initial_scale must be positive, got {initial_scale!r}")
        self.z_dim = z_dim
        self.linear = nn.Linear(z_dim, z_dim)
        self.log_scale = nn.Parameter(torch.full((z_dim,), float(initial_scale)).log())
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(z_dim))
            self.linear.bias.zero_()

    def forward(self, z: torch.Tensor) -> dist.TorchDistribution:
        return dist.Normal(self.linear(z), self.log_scale.exp().expand(z.shape)).to_event(1)
