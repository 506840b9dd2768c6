"""Denoising: the test set corrupted as the guide's training inputs were, at several levels,
and the model's clean estimates from it, scored by their PSNR."""

import time

from ..data import Dataset
from ..estimators.denoising import denoised, denoising_scores
from . import figures
from .base import Context, Programs

__all__ = ["Denoise"]


class Denoise:
    """``denoise``: for each of ``levels``, the split's points corrupted by the run's corruption
    at that level, the mean PSNR (dB) of the corrupted input and of the denoised estimate, and on
    binary data the fraction of pixels each gets wrong. Its figure (``denoising.png``) shows
    eight test images at the first three levels."""

    keys = ("denoise",)

    def __init__(self, levels=(0.1, 0.2, 0.3, 0.4, 0.5)):
        self.levels = [float(level) for level in levels]
        if not self.levels or any(not level > 0 for level in self.levels):
            raise ValueError(f"levels={self.levels}: expected a non-empty list of corruption levels above 0")

    def unsupported(self, programs: Programs, data: Dataset) -> str | None:
        if not programs.guide.denoising:
            return "it needs a guide trained on corrupted inputs, and the run has corruption=none (choose corruption=salt_pepper, gaussian or mask)"
        return programs.takes_keys and f"denoising here runs {programs.takes_keys}"

    def __call__(self, context: Context) -> dict:
        start = time.perf_counter()
        corruption = type(context.guide.corruption)
        scores = denoising_scores(context.model, context.guide, context.x, corruption, self.levels, context.dataset.levels == 2)
        return {"denoise": {**scores, "seconds": time.perf_counter() - start}}

    def figures(self, context: Context, entry: dict) -> None:
        if not context.dataset.images:
            return
        clean, levels = context.x[:8], self.levels[:3]
        noisy = [type(context.guide.corruption)(level)(clean) for level in levels]
        estimates = [denoised(context.model, context.guide, n) for n in noisy]
        figures.denoising(clean, noisy, estimates, levels, context.dataset.image_shape, context.plots / "denoising.png")
