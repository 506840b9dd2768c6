"""Evaluation of a trained model and guide on a split: the numbers that go into metrics.json."""

import math

import torch
from torch import nn

from .estimators import DEFAULT_CHUNK_SIZE, importance_sampling

__all__ = ["evaluate", "mean_and_stderr", "bits_per_dim"]


def mean_and_stderr(values: torch.Tensor) -> dict:
    """The mean of per-datapoint values and its standard error over data points."""
    n = values.numel()
    stderr = values.std().item() / math.sqrt(n) if n > 1 else 0.0
    return {"mean": values.mean().item(), "stderr": stderr, "n": n}


def bits_per_dim(log_px: float, x_dim: int, dequantized_levels: int | None = None) -> float:
    """−log₂ P(x) / D for a log probability of discrete data in nats.

    For a density on uniformly dequantized data, x = (k + u)/L, each of the D values occupies
    a bin of width 1/L, so log P(k) ≥ E_u[log p(x)] − D·log L (Theis et al. 2016, eq. 9): the
    rule that makes continuous and discrete likelihoods comparable on 8-bit data.
    """
    if dequantized_levels is not None:
        log_px = log_px - x_dim * math.log(dequantized_levels)
    return -log_px / (x_dim * math.log(2))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    guide: nn.Module,
    x: torch.Tensor,
    *,
    num_particles: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict:
    """Per-datapoint ELBO and log p̂(x), averaged over the data points of ``x``.

    The guide's K importance weights give both the ELBO (their mean in log space) and log p̂(x)
    (their log-mean-exp); the prior proposal at the same K shows what the guide buys. Models
    with a closed form (``exact_log_px``) also report the exact value.

    :returns: ``{"elbo": float, "log_px": {...}, "log_px_prior": {...}[, "log_px_exact": {...}]}``
        where each ``log_px*`` holds ``mean``, ``stderr`` (over data points), ``n``, and for
        estimates ``num_particles`` and ``proposal``. All in nats per data point.
    """
    model.eval(), guide.eval()
    guided = importance_sampling(model, guide, x, num_particles, chunk_size)
    naive = importance_sampling(model, None, x, num_particles, chunk_size)
    metrics = {
        "elbo": guided.elbo.mean().item(),
        "log_px": {**mean_and_stderr(guided.log_px), "num_particles": num_particles, "proposal": "guide"},
        "log_px_prior": {**mean_and_stderr(naive.log_px), "num_particles": num_particles, "proposal": "prior"},
    }
    if hasattr(model, "exact_log_px"):
        metrics["log_px_exact"] = mean_and_stderr(model.exact_log_px(x))
    return metrics
