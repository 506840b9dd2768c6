"""How far to trust an importance-sampling estimate: Pareto k̂ and effective sample size.

For each data point, its K importance weights w_k = p(x, z_k)/q(z_k|x) are fitted in their upper
tail by a generalized Pareto distribution (PSIS, Vehtari et al. 2024, through ArviZ's
``psislw``); its shape k̂ says how heavy the tail is. Below 0.5 the estimate converges fast;
between 0.5 and 0.7 it is usable; above 0.7 the variance of the weights is so large (or
infinite) that log p̂(x) may be far off for any practical K, whatever its standard error says.
The effective sample size (Σw)²/Σw² says how many of the K samples carry the estimate.
"""

import warnings

import numpy as np
import torch

from .arviz_import import arviz

__all__ = ["K_HAT_LIMIT", "UNRELIABLE_FRACTION", "effective_sample_size", "pareto_k_and_ess", "summarize", "unreliable"]

K_HAT_LIMIT = 0.7  # above it, a point's estimate is unreliable (Vehtari et al.)
UNRELIABLE_FRACTION = 0.05  # more such points than this, and the run says so


def effective_sample_size(log_weights: torch.Tensor) -> torch.Tensor:
    """(Σw)²/Σw² of each column of ``(K, B)`` log weights, computed in log space."""
    return torch.exp(2 * torch.logsumexp(log_weights, 0) - torch.logsumexp(2 * log_weights, 0))


def pareto_k_and_ess(log_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """k̂ and the effective sample size of each column of ``(K, B)`` log weights."""
    lw = log_weights.detach().double().cpu()
    ess = effective_sample_size(lw)
    with warnings.catch_warnings():  # it warns of the very tails that k̂ reports
        warnings.simplefilter("ignore")
        _, k_hat = arviz().psislw(lw.T.numpy())  # samples along the last axis
    return torch.as_tensor(np.asarray(k_hat, dtype=np.float64)), ess


def summarize(k_hat: torch.Tensor, ess: torch.Tensor) -> dict:
    """The numbers of ``metrics.json``'s ``diagnostics``: k̂'s mean, max and the fraction of
    points above the limit; the smallest and median effective sample size. With fewer than
    about 25 samples per point no tail can be fitted: k̂ is then null, with a note."""
    summary = {"ess_min": ess.min().item(), "ess_median": ess.median().item()}
    if not torch.isfinite(k_hat).any():
        note = "too few importance samples per point to fit a Pareto tail (k̂ needs K of about 25 or more)"
        return {"pareto_k_mean": None, "pareto_k_max": None, "pareto_k_above_0.7": None, **summary, "pareto_k_note": note}
    return {
        "pareto_k_mean": k_hat.mean().item(),
        "pareto_k_max": k_hat.max().item(),
        "pareto_k_above_0.7": (k_hat > K_HAT_LIMIT).double().mean().item(),
        **summary,
    }


def unreliable(diagnostics: dict, what: str = "log p̂(x)") -> str | None:
    """A plain warning when too many points have k̂ above the limit; None when all is well."""
    fraction = diagnostics["pareto_k_above_0.7"]
    if fraction is None or fraction <= UNRELIABLE_FRACTION:
        return None
    return (
        f"the {what} estimate is unreliable: {fraction:.0%} of points have Pareto k̂ > {K_HAT_LIMIT} "
        f"(max {diagnostics['pareto_k_max']:.2f}, smallest ESS {diagnostics['ess_min']:.1f}); use more particles "
        "(evaluation.num_particles=...) or a better guide"
    )
