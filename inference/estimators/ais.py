"""Annealed importance sampling (Neal 2001), as Wu et al. (2017) use it to evaluate decoders,
and bidirectional Monte Carlo (Grosse et al. 2015) to bound its error.

AIS moves C chains per data point through the geometric path

    f_β(z) = p_start(z)^(1−β) · p(x, z)^β,   β = β_0 = 0 < β_1 < … < β_T = 1,

from the prior (or the guide), with an HMC transition that leaves f_β_t invariant after each
step and the weight log w += (β_t − β_{t−1}) (log p(x, z) − log p_start(z)). Then
logmeanexp(log w) over the chains is a stochastic lower bound on log p(x): unbiased in p(x),
and tight as T grows.

Run in reverse from an exact posterior sample (available for data simulated from the model,
x ~ p(x | z*), z* ~ p(z)), the same path gives an unbiased estimate of 1/p(x), so
−logmeanexp(log w_reverse) is a stochastic upper bound. The two bracket log p(x); the width
of the sandwich bounds the error of both, and of importance sampling on such data.

Both bounds hold for transitions fixed before the run whose weights are reported: a step size
adapted from that run's own acceptance depends on its draws and voids them. So a pilot run
(forward, from p_start, with fewer chains) adapts a step size per data point and per β_t
towards an acceptance of 0.65 (:func:`adapted_step_sizes`), its weights discarded; the reported
runs, forward and reverse, use that schedule frozen.

Everything is vectorized over chains and data points, and runs without autograd except for
the gradient of the potential. The model's latent sites, of any names and number, move together
as one real vector per point (:class:`~inference.estimators.programs.LatentVector`); they must
be continuous and unconstrained, under the data plate alone.
"""

import math
from typing import NamedTuple

import pyro
import torch
from pyro import poutine

from .programs import PARTICLES, LatentVector, frozen, simulated, site_log_probs

__all__ = ["AISEstimate", "adapted_step_sizes", "ais", "bidirectional", "sigmoid_schedule"]

TARGET_ACCEPTANCE = 0.65  # the pilot's step size adapts towards it, per data point


class AISEstimate(NamedTuple):
    log_px: torch.Tensor  #: (B,): logmeanexp of the chains' log weights (an upper bound when reverse)
    acceptance: float  #: mean HMC acceptance rate over all transitions


def sigmoid_schedule(steps: int, sharpness: float = 4.0) -> torch.Tensor:
    """β_0 = 0 … β_T = 1, spaced densely at both ends (Grosse et al. 2015): ``steps + 1`` values."""
    if steps < 1:
        raise ValueError(f"AIS needs at least one step, got {steps}")
    s = torch.sigmoid(sharpness * torch.linspace(-1, 1, steps + 1, dtype=torch.float64))
    return ((s - s[0]) / (s[-1] - s[0])).clamp(0, 1)


class _Path:
    """log p_start(z) and log p(x, z) for z of shape (C, B, D), each (C, B)."""

    def __init__(self, model, guide, x: torch.Tensor, chains: int):
        self.model, self.guide, self.x, self.C, self.B = model, guide, x, chains, x.shape[0]
        self.latents = LatentVector(model, x)

    def densities(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values = self.latents.split(z)
        with pyro.plate(PARTICLES, self.C, dim=self.latents.dim):
            model = poutine.trace(poutine.condition(self.model, data=values)).get_trace(self.x)
            start = model if self.guide is None else poutine.trace(poutine.condition(self.guide, data=values)).get_trace(self.x)
        log_start = site_log_probs(start, self.C, self.B, observed=None, names=values)  # the conditioned sites
        return log_start, site_log_probs(model, self.C, self.B, observed=None)

    def start(self) -> torch.Tensor:
        """C draws per data point from p_start."""
        with pyro.plate(PARTICLES, self.C, dim=self.latents.dim):
            trace = poutine.trace(self.guide if self.guide is not None else self.model).get_trace(self.x)
        return self.latents.join(trace.nodes).detach()


def _hmc(path: _Path, z, beta, step_size, leapfrog: int):
    """One HMC transition per chain and point, leaving f_β invariant; returns z and acceptance (C, B)."""

    def log_f_and_grad(z):
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            log_start, log_joint = path.densities(z)
            log_f = (1 - beta) * log_start + beta * log_joint
            (grad,) = torch.autograd.grad(log_f.sum(), z)
        return log_f.detach(), grad

    eps = step_size[None, :, None]  # per data point
    log_f, grad = log_f_and_grad(z)
    p = torch.randn_like(z)
    h0 = log_f - 0.5 * (p**2).sum(-1)
    z_new, p_new, g = z, p + 0.5 * eps * grad, None
    for i in range(leapfrog):
        z_new = z_new + eps * p_new
        log_f_new, g = log_f_and_grad(z_new)
        p_new = p_new + (eps if i < leapfrog - 1 else 0.5 * eps) * g
    h1 = log_f_new - 0.5 * (p_new**2).sum(-1)
    log_accept = (h1 - h0).nan_to_num(nan=-math.inf).clamp(max=0)
    accept = torch.rand_like(log_accept).log() < log_accept
    return torch.where(accept[..., None], z_new, z), log_accept.exp()


def _check(model, guide, x: torch.Tensor, leapfrog: int, chains: int, step_size: float) -> None:
    reason = LatentVector.unsupported(model, guide, x)
    if reason:
        raise ValueError(f"AIS here anneals {reason}")
    if leapfrog < 1 or chains < 1 or not step_size > 0:
        raise ValueError(f"AIS needs leapfrog ≥ 1, chains ≥ 1 and step_size > 0; got {leapfrog}, {chains}, {step_size}")


@torch.no_grad()
def adapted_step_sizes(
    model, x: torch.Tensor, *, guide=None, steps: int = 500, leapfrog: int = 10, step_size: float = 0.05, chains: int = 4
) -> torch.Tensor:
    """The leapfrog step size for the transition at each β_t, per data point: ``(T + 1, B)``,
    from a pilot forward run of ``chains`` chains that starts at ``step_size`` and after each
    transition moves it by 2% towards an acceptance rate of 0.65. Row 0 (β_0, where only a
    reverse run moves) repeats row 1."""
    _check(model, guide, x, leapfrog, chains, step_size)
    betas = sigmoid_schedule(steps).tolist()
    path = _Path(model, guide, x, chains)
    eps = torch.full((x.shape[0],), step_size, device=x.device)
    schedule = [eps]
    with frozen(model), frozen(guide):
        z = path.start()
        for t in range(1, steps + 1):
            schedule.append(eps)
            z, accepted = _hmc(path, z, betas[t], eps, leapfrog)
            eps = eps * torch.where(accepted.mean(0) > TARGET_ACCEPTANCE, 1.02, 0.98)
    schedule[0] = schedule[1]
    return torch.stack(schedule)


@torch.no_grad()
def ais(
    model,
    x: torch.Tensor,
    *,
    guide=None,
    steps: int = 500,
    leapfrog: int = 10,
    step_size: float = 0.05,
    chains: int = 16,
    reverse_from: torch.Tensor | None = None,
    step_sizes: torch.Tensor | None = None,
) -> AISEstimate:
    """AIS estimate of log p(x) for each data point of ``x``.

    :param guide: start the path at q(z|x) instead of the prior.
    :param steps: T, the number of intermediate distributions.
    :param leapfrog: leapfrog steps per HMC transition.
    :param step_size: the pilot's initial leapfrog step size (see :func:`adapted_step_sizes`).
    :param chains: C, independent chains per data point.
    :param reverse_from: ``(B, D)`` exact posterior samples (the latent sites joined as by
        :class:`~inference.estimators.programs.LatentVector`): run the path backwards from
        them, for a stochastic *upper* bound (bidirectional Monte Carlo).
    :param step_sizes: the ``(T + 1, B)`` step sizes per β_t, held fixed through the run; when
        None, a pilot run with a quarter of the chains (at least 2) adapts them first.
    """
    _check(model, guide, x, leapfrog, chains, step_size)
    if step_sizes is None:
        step_sizes = adapted_step_sizes(model, x, guide=guide, steps=steps, leapfrog=leapfrog, step_size=step_size, chains=max(2, chains // 4))
    if step_sizes.shape != (steps + 1, x.shape[0]):
        raise ValueError(f"step_sizes must hold one step size per β_t and point, {(steps + 1, x.shape[0])}; got {tuple(step_sizes.shape)}")
    betas = sigmoid_schedule(steps).tolist()
    path = _Path(model, guide, x, chains)
    reverse = reverse_from is not None
    with frozen(model), frozen(guide):
        z = reverse_from.expand(chains, *reverse_from.shape).clone() if reverse else path.start()
        log_w = torch.zeros(chains, x.shape[0], device=x.device, dtype=torch.float64)
        order = list(range(steps, 0, -1)) if reverse else list(range(1, steps + 1))
        acceptance = 0.0
        for t in order:
            # forward: weigh at β_{t−1}→β_t, then move under f_{β_t}; reverse: weigh β_t→β_{t−1}, move under f_{β_{t−1}}
            log_start, log_joint = path.densities(z)
            delta = betas[t] - betas[t - 1]
            log_w += (-delta if reverse else delta) * (log_joint - log_start).double()
            moved_at = t - 1 if reverse else t
            z, accepted = _hmc(path, z, betas[moved_at], step_sizes[moved_at], leapfrog)
            acceptance += accepted.mean().item() / steps
    log_mean_w = (torch.logsumexp(log_w, 0) - math.log(chains)).float()
    return AISEstimate(-log_mean_w if reverse else log_mean_w, acceptance)


@torch.no_grad()
def bidirectional(model, like: torch.Tensor, num_points: int, **ais_options) -> dict:
    """BDMC on ``num_points`` data points simulated from ``model`` (run on the first points of
    ``like``, whose values it ignores): forward AIS (lower bound), reverse AIS from the
    simulating z (upper bound), per point; and the data themselves."""
    trace, x, _ = simulated(model, like[:num_points])
    if "step_sizes" not in ais_options:  # one pilot for both directions, before either run
        pilot = {k: v for k, v in ais_options.items() if k in ("guide", "steps", "leapfrog", "step_size")}
        ais_options = {**ais_options, "step_sizes": adapted_step_sizes(model, x, **pilot, chains=max(2, ais_options.get("chains", 16) // 4))}
    lower = ais(model, x, **ais_options)
    upper = ais(model, x, reverse_from=LatentVector(model, x).join(trace.nodes), **ais_options)
    return {"x": x, "lower": lower.log_px, "upper": upper.log_px, "acceptance": (lower.acceptance + upper.acceptance) / 2}
