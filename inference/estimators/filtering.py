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
from models.transitions import nearest_turn

from .diagnostics import effective_sample_size
from .programs import PARTICLES

__all__ = ["Filtered", "Sequential", "particle_filter", "sequential_monte_carlo", "systematic_resample"]

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


def _gathered(value: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The particles ``index`` (``(n, B)``) of each sequence of a ``(S, B, ...)`` tensor."""
    return torch.gather(value, 0, index.reshape(index.shape + (1,) * (value.dim() - 2)).expand(index.shape + value.shape[2:]))


class Sequential(NamedTuple):
    """What :func:`sequential_monte_carlo` gives back for a ``(B, k, x_dim)`` batch of sequences."""

    z: torch.Tensor  #: ``(S, B, z_dim)``: the particles of the state of frame k
    latents: dict  #: their transition's sequence latents, name → ``(S, B, size)``
    log_weights: torch.Tensor  #: ``(S, B)``: their log weights since the last resampling
    log_px: torch.Tensor  #: ``(B,)``: log p̂(x₁:k), the log of an unbiased estimate of p(x₁:k)
    resamplings: torch.Tensor  #: ``(B,)``: how many times each sequence's particles were resampled


@torch.no_grad()
def sequential_monte_carlo(
    model, x: torch.Tensor, particles: int, guide=None, latent_draws: int | None = None, defensive: bool = False
) -> Sequential:
    """Sequential importance resampling over the frames of each sequence of ``x``, with the
    model's transition as proposal (``guide=None``: the bootstrap filter) or a sequence guide's
    q(z_t | z_{t−1}, x_t:T) and q(sequence latents | x) (a guide with ``summaries`` and ``step``,
    :class:`~guides.sequence.SequenceGuide`). Each frame multiplies a particle's weight by
    p(x_t | z_t) p(z_t | z_{t−1}) / q(z_t | …), the first also by p(z_1) / q(z_1 | …) and the
    sequence latents' p / q. A proposal that reads frames to come leaves the final estimate of
    p(x₁:k) unbiased; only the intermediate ones are no longer of p(x₁:t).

    :param model: a state-space model (:class:`~models.state_space.StateSpaceModel`).
    :param x: ``(B, k, x_dim)``, the frames.
    :param int particles: S, the particles per sequence.
    :param guide: the proposal; None for the model's own prior and transition.
    :param int latent_draws: M, for a transition with sequence latents: draw them M times a
        sequence, each draw shared by S/M particles that resample among themselves, and weigh
        the M filters' estimates by importance sampling (p̂ = mean over draws of p̂(x | latents)
        p / q, unbiased as each p̂(x | latents) is). None: every particle draws its own, and
        resampling copies them with the state, so that their draws thin out frame by frame.
    :param bool defensive: with a guide, draw every state and sequence latent from the even
        mixture of the guide's proposal and the model's own (prior, transition; the angle of a
        transition that has one conditioned on its frame, :func:`frame_angles`), weighed by the
        mixture's density (defensive importance sampling, Hesterberg 1995). Where the guide is
        right, a weight is at most twice what it would be with the guide alone; where it is
        wrong (a frame unlike those it was trained on), the model's half keeps particles on the
        path the model gives the frames, where the guide's alone lose them and the estimate
        falls by as much as the frames are sharp.
    """
    if defensive and guide is None:
        raise ValueError("a defensive proposal mixes the guide's with the model's own: give the guide")
    read = frame_angles(model, x) if defensive and getattr(model.transition, "angles", ()) else None
    if latent_draws and model.transition.sequence_latents:
        if particles % latent_draws:
            raise ValueError(f"{particles} particles do not split into {latent_draws} latent draws; give a divisor of the particles")
        return _grouped(model, x, particles // latent_draws, guide, latent_draws, defensive, read)
    return _filtered(model, x, particles, guide, defensive=defensive, read=read)


def _mixed(proposal, fallback) -> tuple[torch.Tensor, torch.Tensor]:
    """A draw of the even mixture of two distributions of one batch shape and its log density
    under the mixture, the component picked at random per draw."""
    a, b = proposal.sample(), fallback.sample()
    pick = torch.rand(a.shape[: a.dim() - len(proposal.event_shape)], device=a.device) < 0.5
    value = torch.where(pick.reshape(pick.shape + (1,) * len(proposal.event_shape)), a, b)
    return value, torch.logaddexp(proposal.log_prob(value), fallback.log_prob(value)) - math.log(2)


READ_GRID = 128  # the angles at which a frame's likelihood is evaluated to read its angle (2.8° apart)


@torch.no_grad()
def frame_angles(model, x: torch.Tensor, grid: int = READ_GRID) -> tuple[torch.Tensor, torch.Tensor]:
    """What each frame says of the angle of its state, as a Gaussian: for the coordinate of the
    state that the transition declares an angle (its ``angles``), the maximum of log p(x_t | z)
    over ``grid`` angles around the circle (the other coordinates at 0), and the parabola through
    it and its neighbours, whose peak is the angle and whose curvature gives its standard
    deviation (a Laplace approximation of the frame's likelihood in the angle). ``x``:
    ``(B, T, x_dim)``; returns the angles and their standard deviations, ``(B, T, 1)`` each.
    Reading an angle with the other coordinates at 0 needs a decoder that reads the angle
    alone, as the physics transition's emission (cos θ, sin θ) does: hence one angle."""
    angles = tuple(getattr(model.transition, "angles", ()))
    if len(angles) != 1:
        raise ValueError(f"reading a frame's angle needs a transition with one angle coordinate, and {type(model.transition).__name__} has {len(angles)}")
    spacing = 2 * math.pi / grid
    states = x.new_zeros(grid, model.transition.z_dim)
    states[:, angles[0]] = torch.arange(grid, device=x.device, dtype=x.dtype) * spacing
    frames = model.frame(states)
    flat = x.reshape(-1, 1, x.shape[-1])
    log_lik = torch.cat([frames.log_prob(chunk) for chunk in flat.split(max(1, 2**22 // (grid * x.shape[-1])))])  # (B·T, grid)
    best = log_lik.argmax(-1, keepdim=True)
    before, at, after = (log_lik.gather(-1, (best + shift) % grid) for shift in (-1, 0, 1))
    curvature = (before - 2 * at + after).clamp_max(-(spacing**2) / math.pi**2)  # a flat likelihood reads as an sd of π
    offset = (0.5 * (before - after) / curvature).clamp(-0.5, 0.5)
    angle, scale = (best + offset) * spacing, spacing / (-curvature).sqrt()
    return angle.reshape(*x.shape[:2], 1), scale.reshape(*x.shape[:2], 1)


def _conditioned(base, angles: tuple, read: tuple[torch.Tensor, torch.Tensor]):
    """``base`` (a diagonal Normal over states: the model's prior or transition) with each angle
    conditioned on its frame: the product of its Normal and the frame's (``read``: loc and scale,
    the loc unwrapped to within π of base's), the locally optimal proposal of the angle where
    both are Gaussian (Doucet, Godsill & Andrieu 2000). The other coordinates stay base's."""
    shape = base.batch_shape + base.event_shape
    loc, sd = base.base_dist.loc.expand(shape).clone(), base.base_dist.scale.expand(shape).clone()
    index = list(angles)
    prior_loc, prior_var = loc[..., index], sd[..., index] ** 2
    read_loc = nearest_turn(read[0], prior_loc)
    read_var = read[1] ** 2
    var = prior_var * read_var / (prior_var + read_var)
    loc[..., index] = var * (prior_loc / prior_var + read_loc / read_var)
    sd[..., index] = var.sqrt()
    return pyro.distributions.Normal(loc, sd).to_event(1)


def _grouped(model, x: torch.Tensor, particles: int, guide, draws: int, defensive: bool = False, read: tuple | None = None) -> Sequential:
    """M = ``draws`` filters of each sequence, one per draw of its sequence latents, as M copies
    of the batch (draw-major); their estimates and particles joined per sequence."""
    B = x.shape[0]
    read = tuple(value.repeat(draws, 1, 1) for value in read) if read else None  # read once, not once a copy
    each = _filtered(model, x.repeat(draws, 1, 1), particles, guide, shared_latents=True, defensive=defensive, read=read)
    log_px = torch.logsumexp(each.log_px.view(draws, B), 0) - math.log(draws)
    # a particle's weight among all: its filter's estimate up to its last resampling times its weight since
    before = each.log_px - torch.logsumexp(each.log_weights, 0) + math.log(particles)
    log_weights = (before + each.log_weights).view(particles, draws, B).reshape(particles * draws, B)
    joined = lambda value: value.view(particles, draws, B, *value.shape[2:]).reshape(particles * draws, B, *value.shape[2:])  # noqa: E731
    return Sequential(joined(each.z), {name: joined(value) for name, value in each.latents.items()}, log_weights, log_px,
                      each.resamplings.view(draws, B).float().mean(0))


def _filtered(
    model, x: torch.Tensor, particles: int, guide, shared_latents: bool = False, defensive: bool = False, read: tuple | None = None
) -> Sequential:
    """The filter of :func:`sequential_monte_carlo`; with ``shared_latents`` one draw of the
    sequence latents per sequence, which all its particles share; ``read``, the frames' angles
    (:func:`frame_angles`) that the defensive half conditions on, where the transition has one."""
    S, (B, k) = particles, x.shape[:2]
    log_w = x.new_zeros(S, B)

    def own(proposal, t: int):
        """The defensive half at frame t: the model's own proposal, its angle conditioned on the frame where it has one."""
        return _conditioned(proposal, model.transition.angles, (read[0][:, t], read[1][:, t])) if read else proposal

    with pyro.plate(PARTICLES, 1 if shared_latents else S, dim=-2), pyro.plate("data", B, dim=-1):
        if guide is None or defensive:  # the sequence latents from their prior
            trace = poutine.trace(model.transition.begin).get_trace()
        if guide is not None:
            h = guide.summaries(x)
            proposals = guide.latents_proposal(h)
            proposed, log_q = {}, x.new_zeros(S, B)
            for name, q in proposals.items():
                if defensive:
                    proposed[name], log_q_name = _mixed(q.expand(trace.nodes[name]["fn"].batch_shape), trace.nodes[name]["fn"])
                else:
                    proposed[name] = q.sample((1 if shared_latents else S,))
                    log_q_name = q.log_prob(proposed[name])
                log_q = log_q + log_q_name
            log_w = log_w - log_q
            trace = poutine.trace(poutine.condition(model.transition.begin, data=proposed)).get_trace()
            trace.compute_log_prob(site_filter=lambda name, site: name in proposed)
            log_w = log_w + sum((trace.nodes[name]["log_prob"] for name in proposed), x.new_zeros(S, B))
    latents = {name: trace.nodes[name]["value"].expand(S, B, -1) for name in model.transition.sequence_latents}
    step = trace.nodes["_RETURN"]["value"]
    if guide is None:
        z = model.prior(B).sample((S,))
    else:
        first = guide.step(guide.z_0.expand(B, guide.z_dim), h[:, 0], 0, latents)
        if defensive:
            z, log_q = _mixed(first.expand((S, B)), own(model.prior(B).expand((S, B)), 0))
        else:
            z = first.sample((S,))
            log_q = first.log_prob(z)
        log_w = log_w + model.prior(B).log_prob(z) - log_q
    log_px, resamplings = x.new_zeros(B), torch.zeros(B, dtype=torch.long, device=x.device)
    for t in range(k):
        if t and guide is None:
            z = step(z, t - 1).sample()
        elif t:
            proposal, transition = guide.step(z, h[:, t], t, latents), step(z, t - 1)
            if defensive:
                z_next, log_q = _mixed(proposal, own(transition, t))
            else:
                z_next = proposal.sample()
                log_q = proposal.log_prob(z_next)
            log_w = log_w + transition.log_prob(z_next) - log_q
            z = z_next
        log_w = log_w + model.frame(z).log_prob(x[:, t])
        degenerate = effective_sample_size(log_w) < RESAMPLE_BELOW * S  # (B,): the sequences resampled now
        if t < k - 1 and degenerate.any():
            log_px = log_px + torch.where(degenerate, torch.logsumexp(log_w, 0) - math.log(S), 0.0)
            resamplings = resamplings + degenerate.long()
            index = torch.where(degenerate, systematic_resample(log_w, S), torch.arange(S, device=x.device)[:, None])
            z, latents = _gathered(z, index), {name: _gathered(value, index) for name, value in latents.items()}
            with poutine.condition(data=latents):
                step = model.transition.begin()
            log_w = torch.where(degenerate, 0.0, log_w)
    log_px = log_px + torch.logsumexp(log_w, 0) - math.log(S)
    return Sequential(z, latents, log_w, log_px, resamplings)


@torch.no_grad()
def particle_filter(model, x: torch.Tensor, particles: int, draws: int) -> Filtered:
    """Filter the state of the last frame of each sequence of ``x`` (the bootstrap filter of
    :func:`sequential_monte_carlo`).

    :param model: a state-space model (:class:`~models.state_space.StateSpaceModel`): its
        ``prior(B)``, ``transition`` (``begin()``, then ``step(z, t)``) and ``frame(z)``.
    :param x: ``(B, k, x_dim)``, the frames seen.
    :param int particles: the filter's particles per sequence.
    :param int draws: the equally weighted draws of the state returned.
    """
    filtered = sequential_monte_carlo(model, x, particles)
    index = systematic_resample(filtered.log_weights, draws)
    latents = {name: _gathered(value, index) for name, value in filtered.latents.items()}
    return Filtered(_gathered(filtered.z, index), latents, effective_sample_size(filtered.log_weights), filtered.log_px)
