"""Active units (Burda et al. 2016): how many latent dimensions the model uses."""

import torch

from ..estimators import posterior_mean
from .base import Context

__all__ = ["ActiveUnits"]


class ActiveUnits:
    """``active_units``: the dimensions d of the latent ``site`` whose posterior mean moves with
    the data, Var_x(E_q[z_d | x]) above ``threshold``, over the split's points; a dimension
    below it is the prior's whatever x is. With ``count``, the dimensions of the site, and
    ``variances``, each one's.

    Off by default; one override turns it on:
    ``+evaluation.methods.active_units._target_=inference.evaluations.active_units.ActiveUnits``."""

    keys = ("active_units",)

    def __init__(self, site: str = "z", threshold: float = 0.01):
        if not threshold > 0:
            raise ValueError(f"threshold={threshold!r}: expected a positive variance")
        self.site, self.threshold = site, threshold

    @torch.no_grad()
    def __call__(self, context: Context) -> dict:
        means = posterior_mean(context.guide, context.x, self.site, extra=context.extra)  # (B, D)
        variances = means.var(0)
        return {"active_units": {"active": int((variances > self.threshold).sum()), "count": variances.numel(), "variances": variances.tolist()}}
