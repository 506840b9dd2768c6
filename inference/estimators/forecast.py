"""Successive frames generated: a state-space model filters its state on the first frames of a
sequence and rolls its transition forward (``test.forecast``).

The guide, run on the first k frames alone, gives q(z_k | x₁:k); from S draws of z_k the
transition draws z_{k+1}, …, z_{k+H}, and each decodes to the mean frame of p(x_t | z_t). The
forecast of frame k+h is the mean over the S draws, scored by its per-pixel squared error
against the true frame, beside the naive forecast that repeats frame k.
"""

import torch
from pyro import poutine

import pyro

from .programs import PARTICLES, particle_dim

__all__ = ["filtered", "forecast", "forecast_errors", "per_horizon_errors"]


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
def forecast(model, guide, x: torch.Tensor, context: int, horizon: int, samples: int = 32) -> torch.Tensor:
    """The mean frames of p(x_{k+h} | x₁:k), h = 1 … ``horizon``, for k = ``context``: a
    ``(B, horizon, x_dim)`` tensor, from ``samples`` draws of the filtered state per sequence.

    :param model: a state-space model (:class:`~models.state_space.StateSpaceModel`).
    :param guide: its guide, whose sites ``z_1 … z_T`` follow the frames it is given."""
    z, latents = filtered(guide, x, context, samples, model.transition.sequence_latents)
    states = model.roll_forward(z, context - 1, horizon, latents)
    return torch.stack([model.frame(state).mean.mean(0) for state in states], 1)


def forecast_errors(model, guide, x: torch.Tensor, context: int, horizon: int, samples: int = 32) -> dict:
    """``test.forecast``: per horizon h = 1 … H, the mean per-pixel squared error of the
    forecast frame (``mse``) and of the last seen frame repeated (``mse_repeat_last``)."""
    truth = x[:, context : context + horizon]
    predicted = forecast(model, guide, x, context, horizon, samples)
    repeated = x[:, context - 1 : context].expand_as(truth)
    return per_horizon_errors(truth, context, samples, mse=predicted, mse_repeat_last=repeated)


def per_horizon_errors(truth: torch.Tensor, context: int, samples: int, **predictions: torch.Tensor) -> dict:
    """For each named ``(B, H, x_dim)`` prediction of the ``(B, H, x_dim)`` frames ``truth``
    after the first ``context``, the mean per-pixel squared error per horizon h = 1 … H; with
    the context, the horizons, the draws and the sequences they came from."""
    errors = {name: ((predicted - truth) ** 2).mean((0, 2)).tolist() for name, predicted in predictions.items()}
    return {"context": context, "horizons": list(range(1, truth.shape[1] + 1)), **errors, "samples": samples, "sequences": truth.shape[0]}
