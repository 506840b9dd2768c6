"""Successive frames generated: a state-space model filters its state on the first frames of a
sequence and rolls its transition forward (``test.forecast``).

The state of frame k, given x₁:k, comes from one of two filters (``evaluation.forecast_filter``):

- ``particles`` (the default): the model's own bootstrap particle filter
  (:func:`~inference.estimators.filtering.particle_filter`), which approaches p(z_k | x₁:k) as
  its particles grow, whatever the guide;
- ``guide``: the guide run on the first k frames alone, q(z_k | x₁:k), one pass and no
  particles, but a guide trained on whole sequences is out of its training there (the module
  ``filtering`` says how far).

From S draws of z_k the transition draws z_{k+1}, …, z_{k+H}, and each decodes to the mean frame
of p(x_t | z_t). The forecast of frame k+h is the mean over the S draws, scored by its per-pixel
squared error against the true frame, beside the naive forecast that repeats frame k.
"""

import time
from typing import NamedTuple

import torch
from pyro import poutine

import pyro

from .filtering import particle_filter
from .programs import PARTICLES, particle_dim

__all__ = ["FILTERS", "FILTER_PAIRS", "ContextFilter", "ContextState", "filtered", "forecast", "forecast_errors", "per_horizon_errors"]

FILTERS = ("particles", "guide")
# particle × sequence pairs the particle filter holds at a time: about 34 MB of frames of 256
# pixels, and as many for their likelihood's terms
FILTER_PAIRS = 2**15


class ContextState(NamedTuple):
    """What :class:`ContextFilter` gives back: draws of the state at the end of each sequence's
    first ``context`` frames, from which forecasts and interventions roll on."""

    context: int  #: k, the frames seen
    z: torch.Tensor  #: ``(samples, B, z_dim)``: draws of the state of frame k given x₁:k
    latents: dict  #: the transition's sequence latents of those draws, name → ``(samples, B, size)``
    particles: int | None  #: the particle filter's particles per sequence (``None``: the guide's filter)
    ess: torch.Tensor | None  #: ``(B,)``: the particle filter's effective sample sizes
    seconds: float  #: the filter's time

    @property
    def samples(self) -> int:
        return self.z.shape[0]

    @property
    def description(self) -> dict:
        """What ``test.forecast`` and ``test.intervention`` record of the filter."""
        if self.particles is None:
            return {"filter": "guide", "filter_seconds": self.seconds}
        return {
            "filter": "particles", "filter_particles": self.particles, "filter_ess_median": self.ess.median().item(),
            "filter_ess_min": self.ess.min().item(), "filter_seconds": self.seconds,
        }


class ContextFilter:
    """How the state at the end of the context is filtered: ``filter`` (one of :data:`FILTERS`)
    with ``particles`` particles per sequence (the particle filter's)."""

    def __init__(self, filter: str = "particles", particles: int = 4000):
        if filter not in FILTERS:
            raise ValueError(f"evaluation.forecast_filter={filter!r}: choose one of {', '.join(FILTERS)}")
        if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
            raise ValueError(f"evaluation.filter_particles={particles!r}: the particle filter needs a positive number of particles")
        self.filter, self.particles = filter, particles

    @torch.no_grad()
    def __call__(self, model, guide, x: torch.Tensor, context: int, samples: int = 32) -> ContextState:
        """``samples`` draws of the state of frame k = ``context`` of each sequence of ``x`` given
        x₁:k, and of the transition's sequence latents; with the particle filter's effective
        sample sizes."""
        begun = time.perf_counter()
        if self.filter == "guide":
            z, latents = filtered(guide, x, context, samples, model.transition.sequence_latents)
            return ContextState(context, z, latents, None, None, time.perf_counter() - begun)
        block = max(1, FILTER_PAIRS // self.particles)
        parts = [particle_filter(model, x[start : start + block, :context], self.particles, samples) for start in range(0, x.shape[0], block)]
        latents = {name: torch.cat([part.latents[name] for part in parts], 1) for name in model.transition.sequence_latents}
        z, ess = torch.cat([part.z for part in parts], 1), torch.cat([part.ess for part in parts])
        return ContextState(context, z, latents, self.particles, ess, time.perf_counter() - begun)

    @classmethod
    def of(cls, entry: dict) -> "ContextFilter":
        """The filter a ``test.forecast`` or ``test.intervention`` entry was computed with."""
        return cls(entry["filter"], entry.get("filter_particles", 1))


@torch.no_grad()
def filtered(guide, x: torch.Tensor, context: int, samples: int, latent_names=()) -> tuple[torch.Tensor, dict]:
    """``samples`` draws of q(z_k | x₁:k), k = ``context``, from the guide run on the first k
    frames alone: a ``(samples, B, z_dim)`` tensor, and the guide's draws of the sites named in
    ``latent_names`` (what the transition keeps per sequence)."""
    seen = x[:, :context]
    with pyro.plate(PARTICLES, samples, dim=particle_dim(None, guide, seen)):
        trace = poutine.trace(guide).get_trace(seen)
    return trace.nodes[f"z_{context}"]["value"], {name: trace.nodes[name]["value"] for name in latent_names}


@torch.no_grad()
def forecast(model, start: ContextState, horizon: int) -> torch.Tensor:
    """The mean frames of p(x_{k+h} | x₁:k), h = 1 … ``horizon``, from the filtered state of
    frame k (``start``): a ``(B, horizon, x_dim)`` tensor, each the mean over the state's draws.

    :param model: a state-space model (:class:`~models.state_space.StateSpaceModel`).
    :param start: the state after the context, from a :class:`ContextFilter`."""
    states = model.roll_forward(start.z, start.context - 1, horizon, start.latents)
    return torch.stack([model.frame(state).mean.mean(0) for state in states], 1)


def forecast_errors(model, x: torch.Tensor, start: ContextState, horizon: int) -> dict:
    """``test.forecast``: per horizon h = 1 … H, the mean per-pixel squared error against the
    frames of ``x`` after the context of the forecast frame (``mse``) and of the last seen frame
    repeated (``mse_repeat_last``); and the filter, with the particle filter's effective sample
    sizes."""
    k = start.context
    truth = x[:, k : k + horizon]
    repeated = x[:, k - 1 : k].expand_as(truth)
    errors = per_horizon_errors(truth, k, start.samples, mse=forecast(model, start, horizon), mse_repeat_last=repeated)
    return {**errors, **start.description}


def per_horizon_errors(truth: torch.Tensor, context: int, samples: int, **predictions: torch.Tensor) -> dict:
    """For each named ``(B, H, x_dim)`` prediction of the ``(B, H, x_dim)`` frames ``truth``
    after the first ``context``, the mean per-pixel squared error per horizon h = 1 … H; with
    the context, the horizons, the draws and the sequences they came from."""
    errors = {name: ((predicted - truth) ** 2).mean((0, 2)).tolist() for name, predicted in predictions.items()}
    return {"context": context, "horizons": list(range(1, truth.shape[1] + 1)), **errors, "samples": samples, "sequences": truth.shape[0]}
