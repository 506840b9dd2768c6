"""Bits per dimension, −log₂ p̂(x) / D, of data with a known number of levels."""

from ..data import Dataset
from ..estimators import bits_per_dim
from .base import Context, Programs

__all__ = ["BitsPerDim"]


class BitsPerDim:
    """``bits_per_dim`` from the split's ``log_px`` (the ``log_px`` method runs first), and
    ``bits_levels``, the data's levels: bits of 2-level and of 256-level data do not compare.
    On discrete data under a probability mass function, or on dequantized data (the density's
    bits then count each value's bin)."""

    keys = ("bits_per_dim", "bits_levels")

    def unsupported(self, programs: Programs, data: Dataset) -> str | None:
        if data.levels is None:
            return f"data={data.name} has no known number of levels"
        if not (programs.model.discrete_x or data.dequantize):
            return "it needs a model whose likelihood is a probability mass function, or dequantized data (data.dequantize=true)"
        return None

    def __call__(self, context: Context) -> dict:
        log_px = context.results.get("log_px", {}).get("mean")
        if log_px is None:  # not finite (log_px says why), or the log_px method is not on
            return {}
        data = context.dataset
        levels = data.levels if data.dequantize else None
        return {"bits_per_dim": bits_per_dim(log_px, data.x_dim, levels), "bits_levels": data.levels}
