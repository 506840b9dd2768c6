"""The linear probe: how much of the data's true factors a linear read-out of the posterior
means recovers."""

from ..data import Dataset
from ..estimators import linear_probe_r2, posterior_mean
from ..estimators.programs import sliced
from .base import Context, Programs

__all__ = ["Probe"]


class Probe:
    """``probe``: R² of a linear read-out of the true factors from the posterior means of the
    latent ``site`` (trained on the training points, scored on the split's). For sequences, the
    means of the sites ``{site}_1 … _T`` read out the factors of each frame."""

    keys = ("probe",)

    def __init__(self, site: str = "z"):
        self.site = site

    def unsupported(self, programs: Programs, data: Dataset) -> str | None:
        return None if data.factors is not None else f"it needs data with known factors, and data={data.name} has none"

    def __call__(self, context: Context) -> dict:
        data, n = context.dataset, context.x.shape[0]
        site = tuple(f"{self.site}_{t}" for t in range(1, data.frames + 1)) if data.frames else self.site
        means, factors = {}, {}
        for split in ("train", context.split):
            x = data.split(split)[:n]
            mean = posterior_mean(context.guide, x, site, extra=sliced(data.batch_extra(split, context.programs.batch_keys), slice(0, n)))
            truth = data.factors[split][: len(mean)]
            means[split], factors[split] = mean.reshape(-1, mean.shape[-1]), truth.reshape(-1, truth.shape[-1])  # frames as points
        r2 = linear_probe_r2(means["train"], factors["train"], means[context.split], factors[context.split])
        return {"probe": {"r2": dict(zip(data.factor_names, r2.tolist())), "r2_mean": r2.mean().item(), "site": self.site}}
