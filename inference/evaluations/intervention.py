"""An intervention on the latent physics: the drive switched off in the model, against the
simulator run without it."""

import time

from ..data import Dataset
from ..estimators.forecast import ContextFilter
from ..estimators.intervention import intervened_frames, intervention_errors
from . import figures
from .base import Context, Programs
from .forecast import filtered_context, sequences_reason

__all__ = ["Intervention"]


class Intervention:
    """``intervention``: after the first ``context`` frames of each sequence (null: the
    forecast's, ``forecast_context``), the model rolled forward with its drive switched off
    (``poutine.do``) and as learned, each against the simulator's frames with the drive off,
    per horizon up to ``horizon`` (0: the rest of the sequence); the state filtered as the
    forecast's (``filter``, ``particles``). Its figure: the truth, do(A = 0) and as learned."""

    keys = ("intervention",)

    def __init__(self, context: int | None = None, forecast_context: int = 10, horizon: int = 0, filter: str = "particles", particles: int = 4000):
        self.context = context or forecast_context
        if isinstance(self.context, bool) or not isinstance(self.context, int) or self.context < 1:
            raise ValueError(f"context={self.context!r}: expected a positive number of frames")
        self.horizon, self.filter = horizon, ContextFilter(str(filter), particles)

    def unsupported(self, programs: Programs, data: Dataset) -> str | None:
        reason = sequences_reason(programs, data)
        if reason:
            return reason
        if not programs.model.learned_constants:
            return "it needs a transition with a drive to switch off (transition=physics)"
        if not data.physics or data.factors is None:
            return f"it needs data from the pendulum's simulator (data=pendulum_sequences), which data={data.name} is not"
        if self.context >= data.frames:
            raise ValueError(
                f"evaluation.intervention_context={self.context} leaves none of data={data.name}'s {data.frames} frames to switch the "
                f"drive off in; keep it under {data.frames} (null: evaluation.forecast_context)"
            )
        return None

    def __call__(self, context: Context) -> dict:
        data, n = context.dataset, context.x.shape[0]
        start = filtered_context(context.model, context.guide, context.x, self.context, self.filter)
        begun, horizon = time.perf_counter(), self.horizon or data.frames - self.context
        errors = intervention_errors(context.model, start, data.factors[context.split][:n], data.physics, data.image_shape[0], horizon)
        return {"intervention": {**errors, "seconds": time.perf_counter() - begun}}

    def figures(self, context: Context, entry: dict) -> None:
        if len(context.dataset.image_shape) != 2:
            return
        data, x = context.dataset, context.x[:4]
        start = self.filter(context.model, context.guide, x, self.context)
        frames = intervened_frames(context.model, start, data.factors[context.split][:4], data.physics, data.image_shape[0], len(entry["horizons"]))
        figures.intervention_frames(*frames, self.context, data.image_shape, context.plots / "intervention.png")
