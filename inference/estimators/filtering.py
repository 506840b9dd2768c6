"""The bootstrap particle filter of a state-space model (Gordon, Salmond & Smith 1993):
p(z_k, sequence latents | x₁:k), the state at the end of a sequence's first k frames, by
sequential importance resampling with the model's own prior and transition as proposals.

Forecasts start from this state (``evaluation.forecast_filter=particles``). The guide's
q(z_k | x₁:k) is the other choice, and a poor one where it matters: a sequence guide is
trained on whole sequences, its backward summary h_t reading x_t … x_T, so that on the first k
frames alone its state at frame k reads one frame and its summary of the sequence k frames
rather than T, so that its state can be confidently wrong. The filter asks nothing of the guide: the particles of
(z_1, the sequence latents) are drawn from the model's priors, moved by the transition, and
weighed by each frame's likelihood (a sequence's particles are resampled, systematically, when
their effective sample size falls under half; the other sequences' keep their weights, and the
noise of a resampling they do not need), so that its draws approach the model's own posterior as the
particles grow, for any transition, and its normalizing constants give log p̂(x₁:k), unbiased
in p (Del Moral 2004), which the tests check against a Kalman filter.

A transition's ``sequence_latents`` (the physics transition's drive phase) are static: a
particle keeps its draw for the whole sequence, and resampling copies it with the state. With
a near-deterministic transition, the filter is in effect importance sampling of (z_1, the
sequence latents), and needs the more particles the less the first frames pin them down.
"""

import math
from typing import NamedTuple

import torch
from pyro import poutine

import pyro

from .programs import PARTICLES

__all__ = ["Filtered", "particle_filter", "systematic_resample"]

RESAMPLE_BELOW = 0.5  # a sequence is resampled when its effective sample size falls under this share of the particles


class Filtered(NamedTuple):
    """What :func:`particle_filter` gives back for a ``(B, k, x_dim)`` batch of sequences."""

    z: torch.Tensor  #: ``(draws, B, z_dim)``: equally weighted draws of the state of frame k
    latents: dict  #: the transition's sequence latents of those draws, name → ``(draws, B, size)``
    ess: torch.Tensor  #: ``(B,)``: the effective sample size of the final weights, out of ``particles``
    log_px: torch.Tensor  #: ``(B,)``: log p̂(x₁:k), the log of the filter's unbiased estimate of p(x₁:k)


def systematic_resample(log_weights: torch.Tensor, draws: int) -> torch.Tensor:
    """Indices of ``draws`` particles per column of the ``(S, B)`` ``log_weights``, by systematic
    resampling (one uniform per column; each particle drawn within one of ``draws`` × its
    weight): a ``(draws, B)`` tensor."""
    weights = torch.softmax(log_weights, 0).T  # (B, S)
    cumulative = weights.cumsum(-1)
    cumulative[:, -1] = 1.0  # rounding must not leave the last point beyond the total
    points = (torch.rand(weights.shape[0], 1, device=weights.device) + torch.arange(draws, device=weights.device)) / draws
    return torch.searchsorted(cumulative, points).clamp_max(weights.shape[1] - 1).T


def _effective_size(log_weights: torch.Tensor) -> torch.Tensor:
    return torch.exp(2 * torch.logsumexp(log_weights, 0) - torch.logsumexp(2 * log_weights, 0))


def _gathered(value: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The particles ``index`` (``(n, B)``) of each sequence of a ``(S, B, ...)`` tensor."""
    return torch.gather(value, 0, index.reshape(index.shape + (1,) * (value.dim() - 2)).expand(index.shape + value.shape[2:]))


@torch.no_grad()
def particle_filter(model, x: torch.Tensor, particles: int, draws: int) -> Filtered:
    """Filter the state of the last frame of each sequence of ``x``.

    :param model: a state-space model (:class:`~models.state_space.StateSpaceModel`): its
        ``prior(B)``, ``transition`` (``begin()``, then ``step(z, t)``) and ``frame(z)``.
    :param x: ``(B, k, x_dim)``, the frames seen.
    :param int particles: the filter's particles per sequence.
    :param int draws: the equally weighted draws of the state returned.
    """
    S, (B, k) = particles, x.shape[:2]
    with pyro.plate(PARTICLES, S, dim=-2), pyro.plate("data", B, dim=-1):
        trace = poutine.trace(model.transition.begin).get_trace()  # the sequence latents, from their prior
    latents = {name: trace.nodes[name]["value"] for name in model.transition.sequence_latents}
    step = trace.nodes["_RETURN"]["value"]
    z = model.prior(B).sample((S,))
    log_w, log_px = x.new_zeros(S, B), x.new_zeros(B)
    for t in range(k):
        if t:
            z = step(z, t - 1).sample()
        log_w = log_w + model.frame(z).log_prob(x[:, t])
        degenerate = _effective_size(log_w) < RESAMPLE_BELOW * S  # (B,): the sequences resampled now
        if t < k - 1 and degenerate.any():
            log_px = log_px + torch.where(degenerate, torch.logsumexp(log_w, 0) - math.log(S), 0.0)
            index = torch.where(degenerate, systematic_resample(log_w, S), torch.arange(S, device=x.device)[:, None])
            z, latents = _gathered(z, index), {name: _gathered(value, index) for name, value in latents.items()}
            with poutine.condition(data=latents):
                step = model.transition.begin()
            log_w = torch.where(degenerate, 0.0, log_w)
    log_px = log_px + torch.logsumexp(log_w, 0) - math.log(S)
    index = systematic_resample(log_w, draws)
    return Filtered(_gathered(z, index), {name: _gathered(value, index) for name, value in latents.items()}, _effective_size(log_w), log_px)
