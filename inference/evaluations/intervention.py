"""An intervention on the latent physics: the drive switched off in the model, against the
simulator run without it."""

import time

from models.physics import DRIVE_SITE

from ..data import Dataset
from ..data.pendulum import PendulumSimulator
from ..estimators.forecast import ContextFilter, ContextState
from ..estimators.intervention import intervened_rollouts, intervention_errors
from . import figures
from .base import Context, Programs, positive_ints
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
        positive_ints("a positive number of frames", context=self.context)
        self.horizon, self.filter = horizon, ContextFilter(str(filter), particles)

    def unsupported(self, programs: Programs, data: Dataset) -> str | None:
        reason = sequences_reason(programs, data)
        if reason:
            return reason
        if DRIVE_SITE not in programs.model.intervenable:
            return "it needs a transition with a drive to switch off (transition=physics, not with transition.drive=zero)"
        if not isinstance(data.simulator, PendulumSimulator) or data.factors is None:
            return f"it needs data from the pendulum's simulator (data=pendulum_sequences), which data={data.name} is not"
        if self.context >= data.frames:
            raise ValueError(
                f"evaluation.intervention_context={self.context} leaves none of data={data.name}'s {data.frames} frames to switch the "
                f"drive off in; keep it under {data.frames} (null: evaluation.forecast_context)"
            )
        return None

    def __call__(self, context: Context) -> dict:
        start = filtered_context(context.model, context.guide, context.x, self.context, self.filter)
        begun, horizon = time.perf_counter(), self.horizon or context.dataset.frames - self.context
        errors = intervention_errors(*self.frames(context, start, horizon), start)
        return {"intervention": {**errors, "seconds": time.perf_counter() - begun}}

    def frames(self, context: Context, start: ContextState, horizon: int):
        """The truth with the drive off (the pendulum's simulator), the model with it off, and as learned."""
        data, n = context.dataset, start.z.shape[1]
        switched_off, as_learned = intervened_rollouts(context.model, start, horizon, DRIVE_SITE, 0.0)
        truth = data.simulator.undriven_frames(data.factors[context.split][:n], self.context, horizon, data.image_shape[0])
        return truth.to(switched_off), switched_off, as_learned

    def figures(self, context: Context, entry: dict) -> None:
        if not context.dataset.images:
            return
        start = self.filter(context.model, context.guide, context.x[:4], self.context)
        truth, switched_off, as_learned = self.frames(context, start, len(entry["horizons"]))
        figures.intervention_frames(truth, switched_off, as_learned, self.context, context.dataset.image_shape, context.plots / "intervention.png")
