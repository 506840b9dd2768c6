"""The guide of sequence models (``guide=sequence``): q(z₁:T | x₁:T) = Π_t q(z_t | z_{t−1}, x_t:T),
the structured guide of the deep Markov model (Krishnan, Shalit & Sontag 2017; Pyro's ``dmm``
example). A GRU runs backwards over the frames, so that h_t summarizes x_t … x_T; a combiner
mixes h_t with the state just drawn, 0.5·(tanh(W z_{t−1}) + h_t), into the loc and scale of
z_t. The posterior of each state thus sees the frames from t on and, through z_{t−1}, the past.
What the model's transition keeps per sequence (its ``sequence_latents``, the physics
transition's drive phase) is proposed by a Gaussian from h_1, the summary of the whole sequence.

Coordinates of the state that the transition declares angles (its ``angles``: the physics
transition's θ, which the decoder reads through cos θ and sin θ) are read as a direction, in
every frame: the loc of θ_t is the angle of a 2-vector from the combiner, unwrapped to lie
within π of θ_{t−1} (with ``follow_transition``, of the θ_t the transition predicts). A loc read
as a number would start in a narrow arc, and the decoder learns to draw every angle of the
pendulum from that arc, a state the dynamics cannot put right; a direction spans the circle
from the start, and unwrapping keeps a pendulum that turns over a continuous path.

With ``follow_transition=true`` the loc of z_t (t ≥ 2) is the model's own transition mean from
z_{t−1} plus a correction from the combiner, in the manner of deep variational Bayes filters
(Karl et al. 2017): a trajectory the guide proposes follows the dynamics unless the frames say
otherwise, so that the states, the velocity above all, keep the meaning the transition gives
them. Without it a guide may read the angles from the frames and fill the velocity with
anything, and the transition, learning from those states, explains the motion with noise. The
angles alone stay read from the frames: an angle proposed as the prediction plus a correction
cannot leave a wrong branch once it is on one (a large swing proposed the long way round, over
the top: 19 of 50 test sequences in a physics run before this, which the frames, too far off to
pull the angle back, never corrected), while the direction a frame shows reads whatever the
prediction.
"""

import torch
from torch import nn
from torch.nn import functional as F

import pyro
import pyro.distributions as dist

from models.capabilities import Capabilities
from models.registration import register
from models.transitions import nearest_turn

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
    :param bool follow_transition: propose z_t around the transition's mean from z_{t−1}.
    """

    capabilities = Capabilities(untraceable=None, sequences=True)

    def __init__(
        self, x_dim: int, z_dim: int, rnn_hidden: int = 64, scale_floor: float = 1e-3, model: nn.Module | None = None, follow_transition: bool = False
    ):
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
        transition = getattr(model, "transition", None)
        latents = getattr(transition, "sequence_latents", {})
        self.sequence_latents = nn.ModuleDict({name: nn.Linear(rnn_hidden, 2 * size) for name, size in latents.items()})
        self.angles = tuple(getattr(transition, "angles", ()))
        self.direction = nn.Linear(rnn_hidden, 2 * len(self.angles)) if self.angles else None
        if not isinstance(follow_transition, bool):
            raise ValueError(f"SequenceGuide: guide.follow_transition must be true or false, got {follow_transition!r}")
        if follow_transition and transition is None:
            raise ValueError("guide.follow_transition=true proposes states around the model's transition, and the model has none; use model=state_space")
        self._transition = (transition,) if follow_transition else None  # borrowed, not a submodule: the model owns its weights

    def summaries(self, x: torch.Tensor) -> torch.Tensor:
        """h_t for every frame, ``(B, T, rnn_hidden)``: the GRU run from x_T back to x_t."""
        h, _ = self.rnn(x.flip(1))
        return h.flip(1)

    def latents_proposal(self, h: torch.Tensor) -> dict[str, dist.TorchDistribution]:
        """q(sequence latent | x) for each of the transition's sequence latents, from h_1, the
        summary of the whole sequence (``h``: :meth:`summaries`)."""
        proposals = {}
        for name, head in self.sequence_latents.items():
            loc, scale = head(h[:, 0]).chunk(2, -1)
            proposals[name] = dist.Normal(loc, F.softplus(scale) + self.scale_floor).to_event(1)
        return proposals

    def step(self, z_previous: torch.Tensor, h: torch.Tensor, t: int = 0, latents: dict | None = None) -> dist.TorchDistribution:
        """q(z_t | z_{t−1}, h_t) for frame ``t`` (0-based), the sequence's own latents drawn;
        particles of ``z_previous`` broadcast against h's batch."""
        combined = 0.5 * (torch.tanh(self.z_to_hidden(z_previous)) + h)
        loc = self.loc(combined)
        reference = z_previous  # where an angle read as a direction is unwrapped to
        if self._transition and t > 0:
            reference = self._transition[0].mean(z_previous, t - 1, latents or {})
            loc = reference + loc
        if self.angles:
            cos, sin = self.direction(combined).chunk(2, -1)
            near = reference[..., list(self.angles)].expand(cos.shape)
            unwrapped = nearest_turn(torch.atan2(sin, cos), near)
            columns = list(loc.unbind(-1))
            for j, i in enumerate(self.angles):
                columns[i] = unwrapped[..., j]
            loc = torch.stack(columns, -1)
        return dist.Normal(loc, F.softplus(self.scale(combined)) + self.scale_floor).to_event(1)

    def forward(self, x: torch.Tensor) -> None:
        """:param x: a ``(B, T, x_dim)`` tensor, B sequences of T frames."""
        register("guide", self)
        B, T = x.shape[:2]
        h = self.summaries(x)
        with pyro.plate("data", B):
            latents = {name: pyro.sample(name, q) for name, q in self.latents_proposal(h).items()}
            z = self.z_0.expand(B, self.z_dim)
            for t in pyro.markov(range(T)):
                z = pyro.sample(f"z_{t + 1}", self.step(z, h[:, t], t, latents))
