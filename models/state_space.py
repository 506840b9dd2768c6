"""A state-space model of sequences (``model=state_space``): the deep Markov model of Krishnan,
Shalit & Sontag (2017) with swappable parts, after Pyro's ``dmm`` example.

    z_1 ~ p(z)                                the ``prior`` group
    z_t ~ p(z_t | z_{t−1})                    the ``transition`` group (t = 2 … T)
    x_t ~ p(x_t | decoder(emission(z_t)))     the ``decoder`` and ``likelihood`` groups, all frames at once

All under ``pyro.plate("data", B)``, a data point being a whole sequence ``x`` of shape
``(B, T, x_dim)``; the sites are ``z_1 … z_T``, the time steps under ``pyro.markov``, one
site ``x`` of all the frames given their states (the decoder and likelihood run once on the
``(B, T)`` states, not once a frame: one large batched call instead of T small ones), and whatever the transition keeps per sequence (``transition=physics``: the
drive's phase and amplitude). The decoder reads what the transition's ``emission`` makes of a
state (all of it, but for the physics transition's (cos θ, sin θ)). With every part
linear-Gaussian (``prior=standard_normal transition=linear decoder=linear likelihood=gaussian``
with one scale) log p(x₁:T) is exact by a Kalman filter (:meth:`StateSpaceModel.exact_log_px`),
which the estimators are checked against.
"""

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

import pyro
import pyro.distributions as dist
from pyro import poutine

from .capabilities import Capabilities
from .likelihoods import Gaussian, Likelihood
from .priors import StandardNormal, VampPrior
from .registration import register
from .transitions import LinearTransition
from .vae import WithLikelihood

__all__ = ["KalmanFiltered", "StateSpaceModel", "kalman_filter"]


class StateSpaceModel(WithLikelihood, nn.Module):
    """p(z_1) Π p(z_t | z_{t−1}) Π p(x_t | z_t) over sequences of frames.

    :param prior: p(z_1), a module of the ``prior`` group (``prior(B)``).
    :param transition: p(z_t | z_{t−1}), a module mapping a state to a distribution over the next.
    :param decoder: a module from z_t to the likelihood's parameters of one frame.
    :param likelihood: the distribution of one frame given the decoder's output.
    """

    def __init__(self, prior: nn.Module, transition: nn.Module, decoder: nn.Module, likelihood: Likelihood):
        super().__init__()
        if isinstance(prior, VampPrior):
            raise ValueError(
                "prior=vamp pushes pseudo-inputs through an encoder of single points, which a sequence guide does not have; "
                "choose standard_normal, learned_normal, mixture or flow for p(z_1)"
            )
        self.prior, self.transition, self.decoder, self.likelihood = prior, transition, decoder, likelihood

    @classmethod
    def build(cls, prior: nn.Module, transition: Callable[[int], nn.Module], decoder, likelihood: Likelihood, x_dim: int) -> "StateSpaceModel":
        """Size the transition and the decoder from the prior's ``z_dim`` and the frame: what configs call."""
        transition = transition(prior.z_dim)
        return cls(prior, transition, decoder(transition.emission_dim, x_dim * likelihood.params_per_dim), likelihood)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            untraceable=None, discrete_x=self.likelihood.discrete, sequences=True, exact_log_px=self._linear_gaussian(),
            rollouts=True, learned_constants=self.transition.learns_constants, intervenable=self.transition.intervenable,
        )

    def forward(self, x: torch.Tensor) -> None:
        """:param x: a ``(B, T, x_dim)`` tensor, B sequences of T frames."""
        register("model", self)
        B, T = x.shape[:2]
        with pyro.plate("data", B):
            step = self.transition.begin()
            states = [pyro.sample("z_1", self.prior(B))]
            for t in pyro.markov(range(1, T)):
                states.append(pyro.sample(f"z_{t + 1}", step(states[-1], t - 1)))
            pyro.sample("x", self.frame(torch.stack(states, -2)).to_event(1), obs=x)

    def frame(self, z: torch.Tensor):
        """p(x_t | z_t), the distribution of the frame of state ``z``."""
        return self.likelihood(self.decoder(self.transition.emission(z)))

    def roll_forward(self, z: torch.Tensor, frame: int, horizon: int, latents: dict | None = None) -> list[torch.Tensor]:
        """The states of frames ``frame + 1 … frame + horizon`` (0-based), drawn from the
        transition from ``z``, the state of ``frame``, with the sequence's own latents (the
        transition's ``sequence_latents``) held at ``latents``, e.g. a guide's draws. The
        transition's per-sequence sites go through Pyro's handlers, so that
        ``poutine.do(model.roll_forward, data={"drive_amplitude": ...})`` intervenes on them."""
        missing = set(self.transition.sequence_latents) - set(latents or {})
        if missing:
            raise ValueError(f"roll_forward needs the sequence latents {sorted(missing)} of {type(self.transition).__name__}, e.g. from a guide's trace")
        with poutine.condition(data=latents or {}):
            step = self.transition.begin()
        states = []
        for t in range(frame, frame + horizon):
            z = step(z, t).sample()
            states.append(z)
        return states

    def _linear_gaussian(self) -> bool:
        return (
            isinstance(self.prior, StandardNormal)
            and isinstance(self.transition, LinearTransition)
            and isinstance(self.decoder, nn.Linear)
            and isinstance(self.likelihood, Gaussian)
            and self.likelihood.scale_mode != "decoder"
        )

    @torch.no_grad()
    def exact_log_px(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x₁:T) per sequence by a Kalman filter, for a model whose parts are all
        linear-Gaussian; a ``(B,)`` tensor."""
        return self.exact_filter(x).log_px.to(x.dtype)

    @torch.no_grad()
    def exact_filter(self, x: torch.Tensor) -> "KalmanFiltered":
        """The Kalman filter of each sequence of ``x``, for a model whose parts are all
        linear-Gaussian: log p(x₁:T) and p(z_T | x₁:T), in float64."""
        if not self._linear_gaussian():
            raise ValueError("the exact filter needs prior=standard_normal transition=linear decoder=linear likelihood=gaussian with one scale")
        t = self.transition
        return kalman_filter(x, t.linear.weight, t.linear.bias, t.log_scale.exp(), self.decoder.weight, self.decoder.bias, self.likelihood.x_scale)


class KalmanFiltered(NamedTuple):
    log_px: torch.Tensor  #: ``(B,)``: log p(x₁:T)
    mean: torch.Tensor  #: ``(B, Z)``: the mean of p(z_T | x₁:T)
    cov: torch.Tensor  #: ``(Z, Z)``: its covariance, the same for every sequence


def kalman_filter(
    x: torch.Tensor, A: torch.Tensor, b: torch.Tensor, q: torch.Tensor, W: torch.Tensor, c: torch.Tensor, sigma
) -> KalmanFiltered:
    """The Kalman filter of z_1 ~ N(0, I), z_t ~ N(A z_{t−1} + b, diag q²), x_t ~ N(W z_t + c, σ² I)
    over ``x``, ``(B, T, D)``: log p(x₁:T) by the prediction-error decomposition, and p(z_T | x₁:T);
    in float64."""
    x, A, b, q, W, c = (v.detach().double() for v in (x, A, b, q, W, c))
    sigma = torch.as_tensor(sigma).detach().double()
    B, T, D = x.shape
    Z = A.shape[0]
    # the covariances do not depend on the data: one recursion serves every sequence
    mean, cov = x.new_zeros(B, Z), torch.eye(Z, dtype=x.dtype, device=x.device)
    total = x.new_zeros(B)
    for step in range(T):
        if step:
            mean, cov = mean @ A.T + b, A @ cov @ A.T + torch.diag(q**2)
        innovation_cov = W @ cov @ W.T + sigma**2 * torch.eye(D, dtype=x.dtype, device=x.device)
        residual = x[:, step] - mean @ W.T - c
        total = total + dist.MultivariateNormal(torch.zeros_like(c), covariance_matrix=innovation_cov).log_prob(residual)
        gain = cov @ W.T @ torch.linalg.inv(innovation_cov)  # (Z, D)
        mean = mean + residual @ gain.T
        cov = cov - gain @ W @ cov
    return KalmanFiltered(total, mean, cov)
