"""Forecasts of a model of sequences: its state filtered on the first frames of each test
sequence, its transition rolled forward, the frames it decodes to against the true ones."""

import logging
import time

import torch

from ..data import Dataset
from ..estimators.forecast import ContextFilter, ContextState, forecast, forecast_errors
from . import figures
from .base import Context, Programs, positive_ints

__all__ = ["Forecast", "filtered_context", "sequences_reason"]

log = logging.getLogger(__name__)
FEW_EFFECTIVE_PARTICLES = 30  # a filter's median effective sample size below which runs warn


def sequences_reason(programs: Programs, data: Dataset) -> str | None:
    """Why the rollouts cannot run: data of single points, or a model without a transition."""
    if not data.frames:
        return f"it needs sequences of frames, and data={data.name} holds single points"
    if not programs.model.rollouts:
        return "it needs a model whose transition rolls forward (model=state_space)"
    return None


def filtered_context(model, guide, x: torch.Tensor, context: int, how: ContextFilter) -> ContextState:
    """The state after the first ``context`` frames of the sequences ``x``, filtered ``how``;
    with a warning where the particle filter kept few effective particles."""
    start = how(model, guide, x, context)
    if start.ess is not None and start.ess.median() < FEW_EFFECTIVE_PARTICLES:
        log.warning(
            f"the particle filter of the first {context} frames kept a median of {start.ess.median().item():.0f} effective particles "
            f"of {start.particles}: its state is a few draws, and the rollouts noisy; raise evaluation.filter_particles"
        )
    return start


class Forecast:
    """``forecast``: per horizon h = 1 … ``horizon``, the per-pixel squared error of the frames
    forecast after the first ``context`` frames of each sequence, beside that of repeating the
    last seen frame; the state filtered by ``filter`` (``particles``: the model's particle filter
    with ``particles`` particles per sequence; ``guide``: q(z_k | x_1:k)). Its figures: true
    against forecast frames, and an animation of a sequence beside the model's."""

    keys = ("forecast",)

    def __init__(self, context: int = 10, horizon: int = 10, filter: str = "particles", particles: int = 4000):
        positive_ints("a positive number of frames", context=context, horizon=horizon)
        self.context, self.horizon, self.filter = context, horizon, ContextFilter(str(filter), particles)

    def unsupported(self, programs: Programs, data: Dataset) -> str | None:
        reason = sequences_reason(programs, data)
        if reason is None and self.context + self.horizon > data.frames:
            raise ValueError(
                f"evaluation.forecast_context={self.context} and evaluation.forecast_horizon={self.horizon} reach frame "
                f"{self.context + self.horizon}, beyond the {data.frames} frames of data={data.name}'s sequences; keep their sum at most {data.frames}"
            )
        return reason

    def __call__(self, context: Context) -> dict:
        start = filtered_context(context.model, context.guide, context.x, self.context, self.filter)
        begun = time.perf_counter()
        return {"forecast": {**forecast_errors(context.model, context.x, start, self.horizon), "seconds": time.perf_counter() - begun}}

    def figures(self, context: Context, entry: dict) -> None:
        if not context.dataset.images:
            return
        x = context.x[:4]
        start = self.filter(context.model, context.guide, x, self.context)
        predicted = forecast(context.model, start, self.horizon)
        truth = x[:, self.context : self.context + predicted.shape[1]]
        shape = context.dataset.image_shape
        figures.forecast_frames(truth, predicted, self.context, shape, context.plots / "forecast.png")
        figures.forecast_animation(x[0], predicted[0], self.context, shape, context.plots / "forecast.gif")
