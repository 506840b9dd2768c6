"""An intervention on the latent physics (``evaluation.intervene=true``, ``test.intervention``):
switch the drive off and compare the model's rollout with the simulator's.

The state of frame k is filtered on a test sequence's first k frames, as for a forecast (the
particle filter by default, ``evaluation.forecast_filter``).
From there the model rolls its transition forward twice: as learned, and under Pyro's
``poutine.do`` with the site ``drive_amplitude`` set to 0 (the force switched off). The truth
is the simulator run with A = 0 from the sequence's true state at frame k, rendered without
pixel noise. Each rollout decodes to the mean frame of p(x_t | z_t), averaged over the filtered
draws, and is scored per horizon by its per-pixel squared error against that truth: a model
whose drive is the drive of the data gets closer when the drive is switched off in it.
"""

import math

import torch
from pyro import poutine

from ..data.pendulum import render, simulate
from .forecast import ContextState, per_horizon_errors
from .programs import rng_kept

__all__ = ["DRIVE_SITE", "intervened_frames", "intervention_errors", "paired_reduction"]

DRIVE_SITE = "drive_amplitude"


@torch.no_grad()
def intervened_frames(model, start: ContextState, factors: torch.Tensor, physics: dict, image_size: int, horizon: int):
    """The frames k+1 … k+H after the context of ``start`` of the A = 0 truth, of the model with
    its drive switched off, and of the model as learned: three ``(B, H, x_dim)`` tensors.

    :param start: the state after the context, from a :class:`~.forecast.ContextFilter`.
    :param factors: the true (cos θ, sin θ, θ') of every frame of the sequences, ``(B, T, 3)``.
    :param physics: the data's ``Dataset.physics`` (the constants, ``dt`` and ``stride``)."""
    k, sequences = start.context, start.z.shape[1]
    off = {DRIVE_SITE: torch.zeros((), device=start.z.device)}
    with rng_kept(start.z.device):  # both rollouts draw the same process noise, so that they differ by the drive alone
        switched_off = poutine.do(model.roll_forward, data=off)(start.z, k - 1, horizon, start.latents)
    as_learned = model.roll_forward(start.z, k - 1, horizon, start.latents)
    decoded = [torch.stack([model.frame(state).mean.mean(0) for state in states], 1) for states in (switched_off, as_learned)]

    initial = factors[:, k - 1].double()
    initial = torch.stack([torch.atan2(initial[:, 1], initial[:, 0]), initial[:, 2]], -1)
    constants = {name: physics[name] for name in ("gravity_over_length", "damping", "drive_frequency")}
    truth_states = simulate(
        sequences, horizon + 1, stride=physics["stride"], dt=physics["dt"], drive_amplitude=0.0, initial=initial.cpu(),
        start_time=(k - 1) * physics["frame_interval"], generator=torch.Generator().manual_seed(0), **constants,
    )[:, 1:]  # the generator only draws the unused random start and phase, away from the global RNG
    truth = render(truth_states[..., 0].reshape(-1), image_size).reshape(sequences, horizon, -1).to(decoded[0])
    return truth, decoded[0], decoded[1]


def intervention_errors(model, start: ContextState, factors: torch.Tensor, physics: dict, image_size: int, horizon: int) -> dict:
    """``test.intervention``: per horizon h = 1 … H, the mean per-pixel squared error against
    the A = 0 truth of the model with its drive switched off (``mse_intervened``) and as
    learned (``mse_not_intervened``); and the filter."""
    truth, switched_off, as_learned = intervened_frames(model, start, factors, physics, image_size, horizon)
    errors = per_horizon_errors(truth, start.context, start.samples, mse_intervened=switched_off, mse_not_intervened=as_learned)
    return {**errors, **paired_reduction(truth, switched_off, as_learned), **start.description}


def paired_reduction(truth: torch.Tensor, switched_off: torch.Tensor, as_learned: torch.Tensor) -> dict:
    """Per horizon, how much the intervention lowers the squared error, sequence by sequence
    (``mse_reduction``: ``mse_not_intervened`` − ``mse_intervened``, positive where do(A = 0) is
    closer), and its standard error over the sequences (``mse_reduction_stderr``; ``None`` for
    one sequence). Both rollouts start from the same filtered draws and share their noise, so
    the pairs differ by the drive alone: over one frame its push, A·Δt²/2 in the angle, is small
    beside the filter's error, and the standard error says whether the test sequences resolve it."""
    reduction = ((as_learned - truth) ** 2).mean(-1) - ((switched_off - truth) ** 2).mean(-1)  # (B, H)
    n = reduction.shape[0]
    stderr = (reduction.std(0) / math.sqrt(n)).tolist() if n > 1 else None
    return {"mse_reduction": reduction.mean(0).tolist(), "mse_reduction_stderr": stderr}
