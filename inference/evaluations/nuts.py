"""NUTS, the gold standard, against the guide on a few test points."""

import time

from ..data import Dataset
from ..estimators.posterior import guide_draws, importance_draws, inference_data, mismatch, nuts, summaries
from . import figures
from .base import Context, Programs, positive_ints

__all__ = ["Posterior"]


class Posterior:
    """``posterior``: on the first ``points`` of the split, ``chains`` NUTS chains of ``samples``
    draws after ``warmup`` steps each, against as many draws of the guide; writes
    ``posterior.nc`` (ArviZ), the summaries as ``posterior_summary_*.csv``, and the pair plot
    (for a 2-D latent the contour plot too). Returns the mismatch and NUTS's own checks."""

    keys = ("posterior",)

    def __init__(self, points: int = 5, samples: int = 500, warmup: int = 500, chains: int = 4):
        positive_ints("a positive integer (evaluation.posterior_points=N switches NUTS on with N points)", points=points, samples=samples, warmup=warmup, chains=chains)
        self.points, self.samples, self.warmup, self.chains = points, samples, warmup, chains

    def unsupported(self, programs: Programs, data: Dataset) -> str | None:
        return programs.not_vector and f"NUTS here samples {programs.not_vector}"

    def __call__(self, context: Context) -> dict:
        model, guide, x = context.model, context.guide, context.x[: self.points]
        start = time.perf_counter()
        nuts_z = nuts(model, x, self.samples, self.warmup, self.chains)
        guide_z = guide_draws(model, guide, x, nuts_z.shape[0] * nuts_z.shape[1])
        importance_z, log_w = importance_draws(model, guide, x, min(context.settings.num_particles, 1000))
        data = inference_data(nuts_z, guide_z, importance_z, log_w)
        data.to_netcdf(str(context.run_dir / "posterior.nc"))
        tables = summaries(data)
        for name, table in tables.items():
            table.to_csv(context.run_dir / f"posterior_summary_{name}.csv")
        figures.posterior_pairs(nuts_z, guide_z, context.plots / "posterior_pairs.png")
        if nuts_z.shape[-1] == 2:
            figures.posterior_contour(model, guide, x, context.plots / "posterior_contour.png")
        return {
            "posterior": {
                **mismatch(nuts_z, guide_z),
                "points": x.shape[0],
                "nuts_ess_bulk_min": float(tables["nuts"]["ess_bulk"].min()),
                "nuts_r_hat_max": float(tables["nuts"]["r_hat"].max()),
                "seconds": time.perf_counter() - start,
            }
        }
