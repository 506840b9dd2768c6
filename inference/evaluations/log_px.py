"""log p̂(x) by importance sampling with the guide's proposal (and the prior's), the ELBO, the
exact log p(x) of a model that has one, and each point's numbers in ``per_point.npz``."""

import time

from ..data import Dataset
from ..estimators import evaluate
from .base import Context, Programs

__all__ = ["LogPx"]


class LogPx:
    """``elbo``, ``log_px`` (guide proposal), ``log_px_prior`` (prior proposal, with
    ``prior_proposal``) and ``log_px_exact``, at ``evaluation.num_particles``; ``chunk_size``,
    the pairs per pass it took, and ``seconds``.

    :param prior_proposal: also estimate with the prior as proposal (what the guide buys); it
        costs as much again."""

    keys = ("elbo", "log_px", "log_px_prior", "log_px_exact", "chunk_size", "seconds")
    sharded = True  # on several processes, each estimates its share of the points

    def __init__(self, prior_proposal: bool = True):
        self.prior_proposal = prior_proposal

    def unsupported(self, programs: Programs, data: Dataset) -> None:
        return None  # importance sampling takes every program

    def __call__(self, context: Context) -> dict:
        start = time.perf_counter()
        chunk_size = context.pass_size()
        results = evaluate(
            context.model, context.guide, context.x, num_particles=context.settings.num_particles, chunk_size=chunk_size,
            prior_proposal=self.prior_proposal, extra=context.extra, per_point=context.per_point, log_jacobian=context.dataset.log_jacobian, world=context.world,
            cuda_graphs=context.settings.get("cuda_graphs", True),  # a run of before the key: the default
        )
        return {**results, "chunk_size": chunk_size, "seconds": time.perf_counter() - start}
