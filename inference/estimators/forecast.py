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

import torch
from pyro import poutine

import pyro

from .filtering import particle_filter
from .programs import PARTICLES, particle_dim

__all__ = ["FILTERS", "FILTER_PAIRS", "ContextFilter", "filtered", "forecast", "forecast_errors", "per_horizon_errors"]

FILTERS = ("particles", "guide")
# particle × sequence pairs the particle filter holds at a time: about 34 MB of frames of 256
# pixels, and as many for their likelihood's terms
FILTER_PAIRS = 2**15


class ContextFilter:
    """How the state at the end of the context is filtered: ``filter`` (one of :data:`FILTERS`)
    with ``particles`` particles per sequence (the particle filter's)."""

    def __init__(self, filter: str = "particles", particles: int = 4000):
        if filter not in FILTERS:
            raise ValueError(f"evaluation.forecast_filter={filter!r}: choose one of {', '.join(FILTERS)}")
        if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
            raise ValueError(f"evaluation.filter_particles={particles!r}: the particle filter needs a positive number of particles")
        self.filter, self.particles = filter, particles
        self.ess: torch.Tensor | None = None  # the particle filter's, per sequence, after a call

    @torch.no_grad()
    def __call__(self, model, guide, x: torch.Tensor, context: int, samples: int) -> tuple[torch.Tensor, dict]:
        """``samples`` draws of the state of frame k = ``context`` given x₁:k, a ``(samples, B,
        z_dim)`` tensor, and the draws of the transition's sequence latents by name."""
        if self.filter == "guide":
            return filtered(guide, x, context, samples, model.transition.sequence_latents)
        block = max(1, FILTER_PAIRS // self.particles)
        parts = [particle_filter(model, x[start : start + block, :context], self.particles, samples) for start in range(0, x.shape[0], block)]
        self.ess = torch.cat([part.ess for part in parts])
        latents = {name: torch.cat([part.latents[name] for part in parts], 1) for name in model.transition.sequence_latents}
        return torch.cat([part.z for part in parts], 1), latents

    @classmethod
    def of(cls, entry: dict) -> "ContextFilter":
        """The filter a ``test.forecast`` or ``test.intervention`` entry was computed with."""
        return cls(entry["filter"], entry.get("filter_particles", 1))

    def description(self) -> dict:
        """What ``test.forecast`` and ``test.intervention`` record of the filter."""
        out = {"filter": self.filter}
        if self.filter == "particles":
            out["filter_particles"] = self.particles
            if self.ess is not None:
                out["filter_ess_median"] = self.ess.median().item()
                out["filter_ess_min"] = self.ess.min().item()
        return out


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
def forecast(model, guide, x: torch.Tensor, context: int, horizon: int, samples: int = 32, filter: ContextFilter | None = None) -> torch.Tensor:
    """The mean frames of p(x_{k+h} | x₁:k), h = 1 … ``horizon``, for k = ``context``: a
    ``(B, horizon, x_dim)`` tensor, from ``samples`` draws of the filtered state per sequence.

    :param model: a state-space model (:class:`~models.state_space.StateSpaceModel`).
    :param guide: its guide, whose sites ``z_1 … z_T`` follow the frames it is given.
    :param filter: how the state of frame k is filtered; the particle filter by default."""
    z, latents = (filter or ContextFilter())(model, guide, x, context, samples)
    states = model.roll_forward(z, context - 1, horizon, latents)
    return torch.stack([model.frame(state).mean.mean(0) for state in states], 1)


def forecast_errors(model, guide, x: torch.Tensor, context: int, horizon: int, samples: int = 32, filter: ContextFilter | None = None) -> dict:
    """``test.forecast``: per horizon h = 1 … H, the mean per-pixel squared error of the
    forecast frame (``mse``) and of the last seen frame repeated (``mse_repeat_last``); and the
    filter, with the particle filter's effective sample sizes."""
    filter = filter or ContextFilter()
    truth = x[:, context : context + horizon]
    predicted = forecast(model, guide, x, context, horizon, samples, filter)
    repeated = x[:, context - 1 : context].expand_as(truth)
    return {**per_horizon_errors(truth, context, samples, mse=predicted, mse_repeat_last=repeated), **filter.description()}


def per_horizon_errors(truth: torch.Tensor, context: int, samples: int, **predictions: torch.Tensor) -> dict:
    """For each named ``(B, H, x_dim)`` prediction of the ``(B, H, x_dim)`` frames ``truth``
    after the first ``context``, the mean per-pixel squared error per horizon h = 1 … H; with
    the context, the horizons, the draws and the sequences they came from."""
    errors = {name: ((predicted - truth) ** 2).mean((0, 2)).tolist() for name, predicted in predictions.items()}
    return {"context": context, "horizons": list(range(1, truth.shape[1] + 1)), **errors, "samples": samples, "sequences": truth.shape[0]}
