"""Annealed importance sampling of log p(x) on the first test points, and BDMC's sandwich of
log p(x) on as many points simulated from the model."""

import time

import torch

from ..data import Dataset
from ..estimators import ais, bidirectional, importance_sampling, mean_and_stderr
from .base import Context, Programs

__all__ = ["Annealed"]


class Annealed:
    """``log_px_ais``: AIS from the prior (``start=prior``) or the guide (``start=guide``) along
    ``steps`` geometric intermediate distributions, ``leapfrog`` HMC steps each from
    ``step_size`` (adapted per point and step), ``chains`` chains per point, on the first
    ``points``; ``bdmc``: forward and reverse AIS on as many simulated points, which bound
    log p(x) from below and above, beside importance sampling with the guide on them."""

    keys = ("log_px_ais", "bdmc")

    def __init__(self, points: int = 100, steps: int = 500, leapfrog: int = 10, step_size: float = 0.05, chains: int = 16, start: str = "prior"):
        if str(start) not in ("prior", "guide"):
            raise ValueError(f"start={start!r}: expected prior or guide")
        if not step_size > 0:
            raise ValueError(f"step_size={step_size!r}: expected a positive number")
        self.points, self.start = points, str(start)
        self.options = dict(steps=steps, leapfrog=leapfrog, step_size=step_size, chains=chains)

    def unsupported(self, programs: Programs, data: Dataset) -> str | None:
        return programs.not_vector and f"AIS here anneals {programs.not_vector}"

    def __call__(self, context: Context) -> dict:
        model, x = context.model, context.x[: self.points]
        start = time.perf_counter()
        shift = context.dataset.log_jacobian  # in the data's units where it was standardized
        estimate = ais(model, x, guide=context.guide if self.start == "guide" else None, **self.options)
        out = {"log_px_ais": {**mean_and_stderr(estimate.log_px + shift), **self.options, "start": self.start, "acceptance": estimate.acceptance}}
        out["log_px_ais"]["seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        sandwich = bidirectional(model, x, x.shape[0], **self.options)
        seed = int(torch.randint(2**62, ()))  # as for the test split: the same numbers for any pass size
        importance = importance_sampling(model, context.guide, sandwich["x"], context.settings.num_particles, context.pass_size(sandwich["x"], {}), seed=seed).log_px
        out["bdmc"] = {
            "lower": mean_and_stderr(sandwich["lower"] + shift),
            "upper": mean_and_stderr(sandwich["upper"] + shift),
            "width": mean_and_stderr(sandwich["upper"] - sandwich["lower"]),
            "log_px_importance": mean_and_stderr(importance + shift),
            "points": x.shape[0],
            "acceptance": sandwich["acceptance"],
            "seconds": time.perf_counter() - start,
        }
        return out
