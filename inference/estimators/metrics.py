"""Evaluation of a trained model and guide on a split: the numbers that go into metrics.json."""

import math

import torch
from torch import nn

from models.capabilities import capabilities_of

from .diagnostics import summarize
from .importance import DEFAULT_CHUNK_SIZE, ImportanceEstimate, importance_sampling, seed_group_size
from .programs import Extra, sliced

__all__ = ["evaluate", "mean_and_stderr", "bits_per_dim"]

# The particle counts of the curve of mean log p̂(x) against K (from the first k of the K particles).
CURVE = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def mean_and_stderr(values: torch.Tensor) -> dict:
    """The mean of per-datapoint values and its standard error over data points; where some are
    NaN or infinite, no mean but how many and why (metrics.json holds finite numbers only)."""
    n = values.numel()
    finite = torch.isfinite(values)
    if not finite.all():
        kinds = " and ".join(
            f"{int(count)} {name}" for name, count in [("NaN", values.isnan().sum()), ("+inf", (values == math.inf).sum()), ("-inf", (values == -math.inf).sum())] if count
        )
        return {
            "mean": None,
            "stderr": None,
            "n": n,
            "non_finite": int((~finite).sum()),
            "reason": f"{kinds} of {n} values: -inf where every sample gave a point zero probability (data outside "
            "the likelihood's support, or log weights that underflow); NaN or +inf from a model or guide that "
            "produced non-finite parameters",
        }
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
    prior_proposal: bool = True,
    extra: Extra | None = None,
    per_point: dict | None = None,
    log_jacobian: float = 0.0,
    world=None,
    cuda_graphs: bool = False,
) -> dict:
    """Per-datapoint ELBO and log p̂(x), averaged over the data points of ``x``.

    The guide's K importance weights give both the ELBO (their mean in log space) and log p̂(x)
    (their log-mean-exp); the prior proposal at the same K shows what the guide buys. Models
    with a closed form (``exact_log_px``) also report the exact value.

    :param prior_proposal: also estimate with the prior as proposal (``log_px_prior``); it
        costs as much as the guide's estimate, which matters at large K and many points.
    :param extra: the programs' batch keys (name → tensor with a row per point of ``x``).
    :param per_point: a dict to receive each point's numbers as NumPy arrays: ``log_px``
        (``log_px_prior``), ``elbo``, and the guide's weights' ``pareto_k`` and ``ess``.
    :param log_jacobian: added to every log-density of a point: for data the model sees
        standardized, the map's log-Jacobian (``Dataset.log_jacobian``), so that the numbers
        are of the data in its own units.
    :param world: in a run on several processes (:class:`~inference.training.distributed.World`),
        each rank estimates its shard of the points and every rank gets them all, each point as
        one process estimates it (its draws are seeded by its index).
    :param cuda_graphs: on CUDA, the guide's seeded estimate replays its groups of points as
        CUDA graphs (:func:`~inference.estimators.importance.importance_sampling`): the same numbers.
    :returns: ``{"elbo": float, "log_px": {...}[, "log_px_prior": {...}][, "log_px_exact": {...}]}``
        where each ``log_px*`` holds ``mean``, ``stderr`` (over data points), ``n``, and for
        estimates ``num_particles``, ``proposal`` and ``curve``, the mean log p̂(x) from the
        first k particles for k in 1, 2, 5, 10, … up to K (``curve_stderr``: its standard errors), and ``diagnostics``, the Pareto k̂
        and effective sample sizes of the points' weights (:func:`inference.estimators.diagnostics.summarize`).
        All in nats per data point.
    """
    model.eval(), guide.eval()
    metrics = {}
    proposals = [("log_px", guide, "guide")] + ([("log_px_prior", None, "prior")] if prior_proposal else [])
    for key, proposal, name in proposals:
        # each point's draws from its own seed (itself drawn from the run's RNG): the numbers do
        # not depend on the memory budget that splits the work into passes
        seed = int(torch.randint(2**62, ()))
        estimate = _estimated(model, proposal, x, num_particles, chunk_size, seed, extra, world, cuda_graphs)
        log_px, elbo = estimate.log_px + log_jacobian, estimate.elbo + log_jacobian
        at_k = {str(k): mean_and_stderr(v + log_jacobian) for k, v in estimate.by_num_particles.items()}
        metrics[key] = {
            **mean_and_stderr(log_px),
            "num_particles": num_particles,
            "proposal": name,
            "curve": {k: v["mean"] for k, v in at_k.items()},
            "curve_stderr": {k: v["stderr"] for k, v in at_k.items()},
            "diagnostics": summarize(estimate.pareto_k, estimate.ess),
        }
        if proposal is not None:
            metrics["elbo"] = elbo.mean().item()
        if per_point is not None:
            per_point[key] = log_px.cpu().numpy()
            if proposal is not None:
                per_point.update(elbo=elbo.cpu().numpy(), pareto_k=estimate.pareto_k.cpu().numpy(), ess=estimate.ess.cpu().numpy())
    if capabilities_of(model).exact_log_px:
        exact = model.exact_log_px(x) + log_jacobian
        metrics["log_px_exact"] = mean_and_stderr(exact)
        if per_point is not None:
            per_point["log_px_exact"] = exact.cpu().numpy()
    return metrics


def _estimated(
    model: nn.Module, proposal: nn.Module | None, x: torch.Tensor, num_particles: int, chunk_size: int, seed: int, extra: Extra | None, world, cuda_graphs: bool,
):
    """The seeded estimate of every point of ``x``: here, or shared out among the ranks of ``world``."""
    if world is None:
        return importance_sampling(model, proposal, x, num_particles, chunk_size, curve=CURVE, diagnose=True, seed=seed, extra=extra, cuda_graphs=cuda_graphs)
    part = world.shard(x.shape[0], seed_group_size(num_particles) if proposal is not None else 1)
    mine = None
    if part.stop > part.start:
        mine = importance_sampling(
            model, proposal, x[part], num_particles, chunk_size, curve=CURVE, diagnose=True, seed=seed, extra=sliced(extra or {}, part), first=part.start,
            cuda_graphs=cuda_graphs,
        ).to("cpu")
    return ImportanceEstimate.joined([e for e in world.gathered(mine) if e is not None]).to(x.device)
