"""Per-datapoint estimators of log p(x) and the ELBO, computed from Pyro traces.

For any model/guide pair with latent sites under ``pyro.plate("data", B)``:

    log w_k = log p(x, z_k) − log q(z_k | x),   z_k ~ q(· | x),   k = 1..K
    log p̂(x) = logsumexp_k log w_k − log K      (importance sampling; the IWAE bound,
                                                 Burda et al. 2016, eq. 8)
    ELBO(x) ≈ (1/K) Σ_k log w_k                  (the same weights, averaged in log space)

log p̂(x) is a consistent estimate of log p(x) whose downward bias shrinks as K grows. With
``guide=None`` the proposal is the prior, z_k ~ p(z), and log w_k = log p(x | z_k): the naive
estimator, which needs astronomically many particles once z has more than a few dimensions.

Particles are vectorized with an outer ``pyro.plate("particles", K)`` left of every plate the
programs use (:func:`~inference.estimators.programs.particle_dim`), and the traces keep the data
dimension: log weights are ``(K, B)``, each site's log-density summed over its inner plates. Pyro's
``vectorized_importance_weights`` sums over the data plate and so estimates the joint of the
whole batch instead; it is not used here. Particles × data points are chunked so that at most
``chunk_size`` pairs go through the networks at once, which bounds peak memory whatever K is,
with two exceptions of the seeded estimate (``seed=...``, what runs use): the prior proposal
evaluates each point's K particles in one pass, so a pass holds at least K pairs; and the guide
runs once per seed group (``SEED_GROUP_PAIRS`` pairs, at least one point) on all K particles of
its points, which for an encoder costs latent draws, not decoder outputs. On CUDA the seeded
estimate's groups can be replayed as CUDA graphs (``cuda_graphs=True``,
:mod:`inference.estimators.graphs`).
"""

import contextlib
import math
from collections.abc import Iterator
from functools import partial
from typing import NamedTuple

import torch

import pyro
from pyro import poutine

from .diagnostics import pareto_k_and_ess
from .graphs import SeededGroups
from .programs import PARTICLES, Extra, Program, data_dim, particle_dim, rng_kept, site_log_probs, sliced, trace_latent_sites

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "SEED_GROUP_PAIRS",
    "ImportanceEstimate",
    "importance_sampling",
    "log_importance_weights",
    "weighted_proposals",
    "posterior_mean",
]

# Particle × data-point pairs per forward pass: 2^16 pairs of a 784-dim Bernoulli decoder output
# are about 200 MB of float32, a bound that suits a laptop as well as a GPU.
DEFAULT_CHUNK_SIZE = 2**16
# A seeded estimate draws the proposals of about this many particle × point pairs from one seed
# (seed_group_size): with K = 5000 that is 3 points, whose guide runs once for all three; few
# enough that its draws (about 2^14 latent vectors) stay small beside a pass of the model.
SEED_GROUP_PAIRS = 2**14


def log_importance_weights(
    model: Program, guide: Program | None, x: torch.Tensor, num_particles: int, dim: int | None = None, extra: Extra | None = None
) -> torch.Tensor:
    """log w = log p(x, z) − log q(z|x) for ``num_particles`` draws z ~ q(·|x) per data point.

    :param model: a Pyro program ``model(x)`` with its sites under ``pyro.plate("data", B)``.
    :param guide: a Pyro program ``guide(x)`` over the same latent sites, or ``None`` to
        propose from the model's prior (then log w = log p(x | z)).
    :param x: a ``(B, x_dim)``-shaped batch.
    :param dim: the particle plate's dimension; found from the programs when ``None``
        (:func:`~inference.estimators.programs.particle_dim`).
    :param extra: the programs' batch keys for the points of ``x`` (name → per-point tensor).
    :returns: a ``(num_particles, B)``-shaped tensor.
    """
    return weighted_proposals(model, guide, x, num_particles, dim, extra)[0]


def weighted_proposals(
    model: Program, guide: Program | None, x: torch.Tensor, num_particles: int, dim: int | None = None, extra: Extra | None = None
) -> tuple[torch.Tensor, poutine.Trace]:
    """The log weights of :func:`log_importance_weights` and the trace of the proposals: the
    guide's (the model's, for the prior), whose sites hold the ``(K, ..., B, ...)`` draws."""
    K, B, extra = num_particles, x.shape[0], extra or {}
    dim = particle_dim(model, guide, x, extra) if dim is None else dim
    with pyro.plate(PARTICLES, K, dim=dim):
        if guide is None:
            model_trace = poutine.trace(model).get_trace(x, **extra)
            return site_log_probs(model_trace, K, B, observed=True), model_trace
        guide_trace = poutine.trace(guide).get_trace(x, **extra)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, **extra)
    _check_sites(trace_latent_sites(guide_trace), trace_latent_sites(model_trace))
    log_w = site_log_probs(model_trace, K, B, observed=None) - site_log_probs(guide_trace, K, B, observed=False)
    return log_w, guide_trace


def _log_weight_blocks(
    model: Program, guide: Program | None, x: torch.Tensor, num_particles: int, chunk_size: int, seed: int | None, dim: int,
    extra: Extra | None, cuda_graphs: bool, first: int = 0,
) -> Iterator[torch.Tensor]:
    """Yield the ``(K, b)`` log weights of consecutive blocks of b data points, computing at
    most ``chunk_size`` particle × data-point pairs at a time; ``first``: the index of ``x[0]``
    among the points a seeded estimate's groups are counted in."""
    K, N = num_particles, x.shape[0]
    if seed is not None and guide is not None:
        groups = SeededGroups(partial(_group_log_weights, model, guide, K, chunk_size, dim), cuda_graphs and x.device.type == "cuda")
        size = seed_group_size(K)
        for start in range(0, N, size):
            part = slice(start, start + size)
            yield groups(_derived_seed(seed, (first + start) // size), x[part], sliced(extra, part))
        return
    block = max(1, min(N, chunk_size // K))  # data points per block
    particles = max(1, min(K, chunk_size // block))  # particles per pass
    for start in range(0, N, block):
        x_block, extra_block = x[start : start + block], sliced(extra, slice(start, start + block))
        if seed is None:
            passes = [log_importance_weights(model, guide, x_block, min(particles, K - k), dim, extra_block) for k in range(0, K, particles)]
        else:  # the prior: each point's own trace already holds its weights
            passes = [
                torch.cat([_seeded_prior_log_weights(model, x_block, extra_block, first + start + i, i, K, seed, dim) for i in range(x_block.shape[0])], dim=1)
            ]
        yield torch.cat(passes)


def seed_group_size(num_particles: int) -> int:
    """The points whose proposals a seeded estimate draws from one seed: as many as make
    ``SEED_GROUP_PAIRS`` particle × point pairs (at least one). It depends on K alone, not on
    the passes, so that the estimate is the same for any ``chunk_size``."""
    return max(1, SEED_GROUP_PAIRS // num_particles)


def _derived_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th seed group (or point, for the prior) of an estimate seeded by ``seed``."""
    return (seed * 1_000_003 + index) % 2**63


def _seeded_prior_log_weights(model: Program, x: torch.Tensor, extra: Extra, index: int, i: int, K: int, seed: int, dim: int) -> torch.Tensor:
    """log p(x | z) for K draws z ~ p(z) of the point ``x[i]``, drawn after seeding the global
    RNG by (``seed``, the point's ``index``): ``(K, 1)``. The model runs once per point on all K
    particles, so a pass of the prior holds at least K pairs."""
    point = slice(i, i + 1)
    torch.manual_seed(_derived_seed(seed, index))
    with pyro.plate(PARTICLES, K, dim=dim):
        trace = poutine.trace(model).get_trace(x[point], **sliced(extra, point))
    return site_log_probs(trace, K, 1, observed=True)


def _group_log_weights(model: Program, guide: Program, K: int, chunk_size: int, dim: int, x: torch.Tensor, extra: Extra) -> torch.Tensor:
    """The ``(K, g)`` log weights of a seed group's g points, drawn from the global RNG as it
    is (:class:`~inference.estimators.graphs.SeededGroups` seeds it). The guide runs once for
    the group on all K particles (an encoder's K latent draws a point, not K decoder outputs);
    the model, where the cost is, in passes of at most ``chunk_size`` pairs, conditioned on the
    drawn values."""
    g = x.shape[0]
    with pyro.plate(PARTICLES, K, dim=dim):
        guide_trace = poutine.trace(guide).get_trace(x, **extra)
    log_q = site_log_probs(guide_trace, K, g, observed=False)
    # each value: (K, ..., g, ...), the data plate's dim (counted from the right) holding the points
    latent = trace_latent_sites(guide_trace)
    values = {name: (site["value"], data_dim(name, site) - site["fn"].event_dim) for name, site in guide_trace.nodes.items() if name in latent}
    points = max(1, min(g, chunk_size // K))  # points per pass
    particles = max(1, min(K, chunk_size // points))  # particles per pass
    blocks = []
    for p in range(0, g, points):
        b = min(points, g - p)
        x_pass, extra_pass = x[p : p + b], sliced(extra, slice(p, p + b))
        passes = []
        for k in range(0, K, particles):
            k1 = min(K, k + particles)
            drawn = {name: value[k:k1].narrow(d, p, b) for name, (value, d) in values.items()}
            with pyro.plate(PARTICLES, k1 - k, dim=dim):
                model_trace = poutine.trace(poutine.condition(model, data=drawn)).get_trace(x_pass, **extra_pass)
            _check_sites(set(drawn), set(drawn) | trace_latent_sites(model_trace))
            passes.append(site_log_probs(model_trace, k1 - k, b, observed=None) - log_q[k:k1, p : p + b])
        blocks.append(torch.cat(passes))
    return torch.cat(blocks, dim=1)


def _check_sites(guide_sites: set[str], model_sites: set[str]) -> None:
    """A model site the guide does not sample would be drawn from the prior and silently
    weighed as if proposed: refuse the pair instead."""
    if model_sites != guide_sites:
        raise ValueError(
            f"the guide samples the sites {sorted(guide_sites)} but the model's latent sites are "
            f"{sorted(model_sites)}; use a guide that samples every latent site of this model, under the same names "
            "(guide=hierarchical for model=hierarchical)"
        )


class ImportanceEstimate(NamedTuple):
    """Per-datapoint results of :func:`importance_sampling`, each ``(N,)``-shaped, in nats."""

    log_px: torch.Tensor  #: log p̂(x) = logsumexp_k log w_k − log K
    elbo: torch.Tensor  #: mean_k log w_k, the ELBO of the proposal
    by_num_particles: dict[int, torch.Tensor]  #: log p̂(x) from the first k of the K particles
    pareto_k: torch.Tensor | None = None  #: k̂ of each point's weights (with ``diagnose``)
    ess: torch.Tensor | None = None  #: effective sample size of each point's weights (with ``diagnose``)

    def to(self, device: torch.device | str) -> "ImportanceEstimate":
        def moved(value):
            return None if value is None else {k: v.to(device) for k, v in value.items()} if isinstance(value, dict) else value.to(device)

        return ImportanceEstimate(*(moved(value) for value in self))

    @staticmethod
    def joined(parts: list["ImportanceEstimate"]) -> "ImportanceEstimate":
        """The estimates of consecutive shards of the points as one."""
        def cat(values):
            return None if values[0] is None else {k: torch.cat([v[k] for v in values]) for k in values[0]} if isinstance(values[0], dict) else torch.cat(values)

        return ImportanceEstimate(*(cat(list(values)) for values in zip(*parts)))


@torch.no_grad()
def importance_sampling(
    model: Program,
    guide: Program | None,
    x: torch.Tensor,
    num_particles: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    curve: tuple[int, ...] = (),
    diagnose: bool = False,
    seed: int | None = None,
    extra: Extra | None = None,
    cuda_graphs: bool = False,
    first: int = 0,
) -> ImportanceEstimate:
    """Estimate log p(x) and the ELBO of every data point by importance sampling.

    :param model: the model program.
    :param guide: the proposal, a guide program; ``None`` for the prior.
    :param x: an ``(N, x_dim)``-shaped tensor of data points.
    :param int num_particles: K, the number of importance samples per data point.
    :param int chunk_size: the most particle × data-point pairs evaluated at once.
    :param curve: particle counts k ≤ K at which to also report log p̂(x) from the first k
        particles: the estimate's convergence in K, for free.
    :param diagnose: also fit each point's Pareto k̂ and effective sample size
        (:mod:`inference.estimators.diagnostics`).
    :param seed: draw the proposals of each group of :func:`seed_group_size` points (each
        point's, for the prior) from a generator seeded by (``seed``, the group's index): the
        estimate is then the same for any ``chunk_size`` (up to the last bits of batched
        arithmetic), and the global RNG is left as it was. Without it the draws follow the
        global RNG, pass by pass. With a seed the prior proposal evaluates each point's K
        particles in one pass.
    :param extra: the programs' batch keys (name → tensor with a row per point of ``x``).
    :param cuda_graphs: on CUDA, replay a seeded estimate's groups as CUDA graphs
        (:class:`~inference.estimators.graphs.SeededGroups`): the same numbers, fewer host
        round trips. Ignored elsewhere. Off by default here; runs turn it on
        (``evaluation.cuda_graphs``).
    :param first: for a seeded estimate of a shard of the points (a rank's), the index of
        ``x[0]`` among them all, a multiple of :func:`seed_group_size` for the guide: each point
        is then drawn as in the estimate of them all.
    :returns: an :class:`ImportanceEstimate` of ``(N,)``-shaped tensors.
    """
    if num_particles < 1:
        raise ValueError(f"num_particles must be at least 1, got {num_particles}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    curve = sorted({k for k in curve if k <= num_particles})
    log_px, elbo, by_k, k_hat, ess = [], [], {k: [] for k in curve}, [], []
    first_block = slice(0, max(1, chunk_size // num_particles))
    dim = particle_dim(model, guide, x[first_block], sliced(extra, first_block))
    # a seeded estimate seeds the global RNG group by group: it is put back as it was after
    with rng_kept(x.device) if seed is not None else contextlib.nullcontext():
        for log_w in _log_weight_blocks(model, guide, x, num_particles, chunk_size, seed, dim, extra, cuda_graphs, first):
            log_px.append(torch.logsumexp(log_w, 0) - math.log(num_particles))
            elbo.append(log_w.mean(0))
            for k in curve:
                by_k[k].append(torch.logsumexp(log_w[:k], 0) - math.log(k))
            if diagnose:
                block_k_hat, block_ess = pareto_k_and_ess(log_w)
                k_hat.append(block_k_hat), ess.append(block_ess)
    diagnostics = (torch.cat(k_hat), torch.cat(ess)) if diagnose else (None, None)
    return ImportanceEstimate(torch.cat(log_px), torch.cat(elbo), {k: torch.cat(v) for k, v in by_k.items()}, *diagnostics)


@torch.no_grad()
def posterior_mean(guide: Program, x: torch.Tensor, site: str | tuple[str, ...] = "z", num_particles: int = 64, extra: Extra | None = None) -> torch.Tensor:
    """E_q[z | x] by averaging ``num_particles`` draws of ``site`` from the guide: works for any
    guide, flows included. :returns: a ``(B, z_dim)``-shaped tensor; for a tuple of sites (the
    states ``z_1 … z_T`` of a sequence), their means stacked, ``(B, len(site), z_dim)``."""
    extra = extra or {}
    with pyro.plate(PARTICLES, num_particles, dim=particle_dim(None, guide, x, extra)):
        trace = poutine.trace(guide).get_trace(x, **extra)
    sites = (site,) if isinstance(site, str) else site
    missing = [name for name in sites if name not in trace.nodes]
    if missing:
        raise ValueError(f"the guide has no site {missing[0]!r}; its sites are {sorted(trace_latent_sites(trace))}")
    means = [trace.nodes[name]["value"].mean(0) for name in sites]
    return means[0] if isinstance(site, str) else torch.stack(means, 1)
