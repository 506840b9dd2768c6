"""The guide of sequence models (``guide=sequence``): q(z₁:T | x₁:T) = Π_t q(z_t | z_{t−1}, x_t:T),
the structured guide of the deep Markov model (Krishnan, Shalit & Sontag 2017; Pyro's ``dmm``
example). A GRU runs backwards over the frames, so that h_t summarizes x_t … x_T; a combiner
mixes h_t with the state just drawn, 0.5·(tanh(W z_{t−1}) + h_t), into the loc and scale of
z_t. The posterior of each state thus sees the frames from t on and, through z_{t−1}, the past.
What the model's transition keeps per sequence (its ``sequence_latents``, the physics
transition's drive phase) is proposed by a Gaussian from h_1, the summary of the whole sequence.
"""

import torch
from torch import nn
from torch.nn import functional as F

import pyro
import pyro.distributions as dist

from models.capabilities import Capabilities
from models.registration import register

from .normal import check_guide_arguments

__all__ = ["SequenceGuide"]


class SequenceGuide(nn.Module):
    """Samples ``z_1 … z_T`` under ``pyro.plate("data", B)``, mirroring
    :class:`~models.state_space.StateSpaceModel`.

    :param int x_dim: the size of one flat frame.
    :param int z_dim: the size of a state.
    :param int rnn_hidden: the GRU's and the combiner's width.
    :param float scale_floor: the smallest scale of q(z_t | …).
    :param model: the state-space model, whose transition's ``sequence_latents`` (name → size)
        the guide proposes too; none without it.
    """

    capabilities = Capabilities(untraceable=None, sequences=True)

    def __init__(self, x_dim: int, z_dim: int, rnn_hidden: int = 64, scale_floor: float = 1e-3, model: nn.Module | None = None):
        super().__init__()
        check_guide_arguments("SequenceGuide", z_dim, scale_floor)
        if isinstance(rnn_hidden, bool) or not isinstance(rnn_hidden, int) or rnn_hidden < 1:
            raise ValueError(f"SequenceGuide: guide.rnn_hidden must be a positive integer, got {rnn_hidden!r}")
        self.z_dim, self.scale_floor = z_dim, scale_floor
        self.rnn = nn.GRU(x_dim, rnn_hidden, batch_first=True)
        self.z_0 = nn.Parameter(torch.zeros(z_dim))  # the state "before" the first, learned
        self.z_to_hidden = nn.Linear(z_dim, rnn_hidden)
        self.loc = nn.Linear(rnn_hidden, z_dim)
        self.scale = nn.Linear(rnn_hidden, z_dim)
        latents = getattr(getattr(model, "transition", None), "sequence_latents", {})
        self.sequence_latents = nn.ModuleDict({name: nn.Linear(rnn_hidden, 2 * size) for name, size in latents.items()})

    def summaries(self, x: torch.Tensor) -> torch.Tensor:
        """h_t for every frame, ``(B, T, rnn_hidden)``: the GRU run from x_T back to x_t."""
        h, _ = self.rnn(x.flip(1))
        return h.flip(1)

    def step(self, z_previous: torch.Tensor, h: torch.Tensor) -> dist.TorchDistribution:
        """q(z_t | z_{t−1}, h_t); particles of ``z_previous`` broadcast against h's batch."""
        combined = 0.5 * (torch.tanh(self.z_to_hidden(z_previous)) + h)
        return dist.Normal(self.loc(combined), F.softplus(self.scale(combined)) + self.scale_floor).to_event(1)

    def forward(self, x: torch.Tensor) -> None:
        """:param x: a ``(B, T, x_dim)`` tensor, B sequences of T frames."""
        register("guide", self)
        B, T = x.shape[:2]
        h = self.summaries(x)
        with pyro.plate("data", B):
            for name, head in self.sequence_latents.items():
                loc, scale = head(h[:, 0]).chunk(2, -1)
                pyro.sample(name, dist.Normal(loc, F.softplus(scale) + self.scale_floor).to_event(1))
            z = self.z_0.expand(B, self.z_dim)
            for t in pyro.markov(range(T)):
                z = pyro.sample(f"z_{t + 1}", self.step(z, h[:, t]))
