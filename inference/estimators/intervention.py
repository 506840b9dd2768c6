"""An intervention on a latent site of a state-space model, rolled forward (``test.intervention``
of the pendulum's runs): the model's frames with the site held at a value, and as learned.

The state of frame k is filtered on a sequence's first k frames, as for a forecast
(:class:`~inference.estimators.forecast.ContextFilter`). From there the model rolls its
transition forward twice: as learned, and under Pyro's ``poutine.do`` with the site set (the
pendulum's drive amplitude set to 0: the force switched off). Each rollout decodes to the mean
frame of p(x_t | z_t), averaged over the filtered draws, and is scored per horizon by its
per-pixel squared error against the truth under the same intervention, which the data's own
simulator gives: a model whose mechanism is the data's gets closer when it is intervened on alike.
"""

import math

import torch
from pyro import poutine

from .forecast import ContextState, per_horizon_errors
from .programs import rng_kept

__all__ = ["intervened_rollouts", "intervention_errors", "paired_reduction"]


@torch.no_grad()
def intervened_rollouts(model, start: ContextState, horizon: int, site: str, value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean frames k+1 … k+H after the context of ``start`` of the model with ``site`` held
    at ``value``, and of the model as learned: two ``(B, H, x_dim)`` tensors.

    :param start: the state after the context, from a :class:`~.forecast.ContextFilter`."""
    k = start.context
    held = {site: torch.full((), value, device=start.z.device)}
    with rng_kept(start.z.device):  # both rollouts draw the same process noise, so that they differ by the intervention alone
        intervened = poutine.do(model.roll_forward, data=held)(start.z, k - 1, horizon, start.latents)
    as_learned = model.roll_forward(start.z, k - 1, horizon, start.latents)
    intervened, as_learned = (torch.stack([model.frame(state).mean.mean(0) for state in states], 1) for states in (intervened, as_learned))
    return intervened, as_learned


def intervention_errors(truth: torch.Tensor, intervened: torch.Tensor, as_learned: torch.Tensor, start: ContextState) -> dict:
    """``test.intervention``: per horizon h = 1 … H, the mean per-pixel squared error against
    the intervened ``truth`` of the model intervened on (``mse_intervened``) and as learned
    (``mse_not_intervened``); their paired difference; and the filter."""
    errors = per_horizon_errors(truth, start.context, start.samples, mse_intervened=intervened, mse_not_intervened=as_learned)
    return {**errors, **paired_reduction(truth, intervened, as_learned), **start.description}


def paired_reduction(truth: torch.Tensor, switched_off: torch.Tensor, as_learned: torch.Tensor) -> dict:
    """Per horizon, how much the intervention lowers the squared error, sequence by sequence
    (``mse_reduction``: ``mse_not_intervened`` − ``mse_intervened``, positive where the
    intervened model is closer), and its standard error over the sequences
    (``mse_reduction_stderr``; ``None`` for one sequence). Both rollouts start from the same
    filtered draws and share their noise, so the pairs differ by the intervention alone: the
    pendulum's drive pushes the angle by A·Δt²/2 over one frame, small beside the filter's error,
    and the standard error says whether the test sequences resolve it."""
    reduction = ((as_learned - truth) ** 2).mean(-1) - ((switched_off - truth) ** 2).mean(-1)  # (B, H)
    n = reduction.shape[0]
    stderr = (reduction.std(0) / math.sqrt(n)).tolist() if n > 1 else None
    return {"mse_reduction": reduction.mean(0).tolist(), "mse_reduction_stderr": stderr}
