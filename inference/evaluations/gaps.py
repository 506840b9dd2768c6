"""The inference-gap decomposition (Cremer et al. 2018) on the first test points."""

import time

from ..data import Dataset
from ..estimators import inference_gaps
from .base import Context, Programs

__all__ = ["Gaps"]


class Gaps:
    """``gaps``: the approximation, amortization and inference gaps on the first ``points`` of
    the split, log p(x) inside the decomposition at ``particles`` importance samples, each local
    fit at most ``fit_steps`` steps. A guide trained on corrupted inputs is, in eval mode, the
    guide it wraps: its gaps are that guide's."""

    keys = ("gaps",)

    def __init__(self, points: int = 100, particles: int = 5000, fit_steps: int = 5000):
        self.points, self.particles, self.fit_steps = points, particles, fit_steps

    def unsupported(self, programs: Programs, data: Dataset) -> str | None:
        if programs.takes_keys:
            return f"the inference gaps here weigh {programs.takes_keys}"
        if not programs.guide.encoder:
            return "it needs a guide whose encoder network outputs q's parameters, which the gaps replace by per-point ones (guide=normal, full_rank, iaf, ...)"
        return None

    def __call__(self, context: Context) -> dict:
        start = time.perf_counter()
        x = context.x[: self.points]
        guide = context.guide.guide if context.programs.guide.denoising else context.guide
        gaps = inference_gaps(context.model, guide, x, self.particles, max_steps=self.fit_steps, chunk_size=context.pass_size(x),
                              log_jacobian=context.dataset.log_jacobian)
        return {"gaps": {**gaps, "seconds": time.perf_counter() - start}}
