"""What the estimators need to know of a Pyro program, shared by importance sampling, AIS,
NUTS, the gap decomposition and the figures: the data plate and the particle dimension, the
latent sites of a program, its log-densities per data point, and holding it fixed.

Every sample site sits under ``pyro.plate("data", B)``, which may hold plates of its own (a
pixel plate, a time plate). The estimators put their particles in an outer plate
``pyro.plate("particles", K)`` left of every batch dimension the programs use
(:func:`particle_dim`, as Pyro's ELBOs find ``max_plate_nesting``), so that the traces keep the
data dimension; each site's log-density is summed over its other dimensions, per particle and
data point, into a ``(K, B)``-shaped tensor (:func:`site_log_probs`).
"""

from collections.abc import Callable
from contextlib import contextmanager

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample
from torch import nn

__all__ = [
    "DATA_PLATE",
    "PARTICLES",
    "PARTICLE_DIM",
    "Program",
    "frozen",
    "data_dim",
    "latent_sites",
    "particle_dim",
    "site_log_probs",
    "trace_latent_sites",
]

Program = Callable[[torch.Tensor], None]

DATA_PLATE = "data"
PARTICLES = "particles"
PARTICLE_DIM = -2  # for programs whose only plate is the data plate, at dim -1: see particle_dim


@torch.no_grad()
def particle_dim(model: Program | None, guide: Program | None, x: torch.Tensor) -> int:
    """The dimension for the particle plate: one left of every plate that the sites of
    ``guide(x)`` and ``model(x)`` replayed on it use (Pyro's ``max_plate_nesting``, negated,
    minus one); −2 for a program whose one plate is the data plate. Found from a trace of ``x``,
    as Pyro's ELBOs find it; the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []), poutine.block():
        traces = [poutine.trace(guide).get_trace(x)] if guide is not None else []
        if model is not None:
            replayed = poutine.replay(model, trace=traces[0]) if traces else model
            traces.append(poutine.trace(replayed).get_trace(x))
    nesting = 1
    for trace in traces:
        for site in trace.nodes.values():
            if site["type"] == "sample" and not site_is_subsample(site):
                nesting = max([nesting, *(-frame.dim for frame in site["cond_indep_stack"] if frame.vectorized and frame.dim is not None)])
    return -1 - nesting


def data_dim(name: str, site: dict) -> int:
    """The batch dimension of the data plate at ``site`` (named ``name``)."""
    return _plate_dim(name, site, DATA_PLATE)


def _plate_dim(name: str, site: dict, plate: str) -> int:
    for frame in site["cond_indep_stack"]:
        if frame.name == plate:
            return frame.dim
    if plate == PARTICLES:
        raise ValueError(f"site {name!r} was traced outside pyro.plate({PARTICLES!r}, K): weigh traces the estimators made")
    raise ValueError(
        f"site {name!r} is not inside pyro.plate({plate!r}, ...): per-datapoint log p(x) needs every "
        "sample site of the model and guide under the data plate"
    )


def _per_point(name: str, site: dict, value: torch.Tensor) -> torch.Tensor:
    """``value``, a tensor of ``site``'s batch shape (its log-density), summed over every batch
    dimension but the particle plate's and the data plate's: ``(K or 1, B or 1)``-shaped."""
    data, particles = _plate_dim(name, site, DATA_PLATE), _plate_dim(name, site, PARTICLES)
    if value.dim() > -particles:
        raise ValueError(
            f"site {name!r} has batch dimensions left of the particle plate (shape {tuple(value.shape)}): "
            "declare every batch dimension of a site with a pyro.plate"
        )
    value = value.reshape((1,) * (-particles - value.dim()) + value.shape)  # (K, ..., B, ...)
    inner = [i for i in range(1, value.dim()) if i != value.dim() + data]
    return value.sum(inner) if inner else value


def site_log_probs(trace: poutine.Trace, K: int, B: int, observed: bool | None) -> torch.Tensor:
    """Sum the log densities of a trace's sample sites into a ``(K, B)``-shaped tensor: over
    the sites, and over each site's plates inside the data plate. The trace is of a program run
    inside the particle plate.

    :param observed: ``True`` for observed sites only, ``False`` for latent sites only,
        ``None`` for all.
    """
    terms = []
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue  # plates appear in traces as subsample sites
        _plate_dim(name, site, DATA_PLATE)  # every site, weighed or not, must be per data point
        if observed is not None and site["is_observed"] != observed:
            continue
        # a masked-out term (poutine.mask, obs_mask) is no term of the joint; scales are
        # training's business (subsampling, KL weights), not the density's
        log_prob = scale_and_mask(site["fn"].log_prob(site["value"]), mask=site["mask"])
        terms.append(torch.broadcast_to(_per_point(name, site, log_prob), (K, B)))
    if not terms:
        raise ValueError("the program has no sample sites to weigh")
    return sum(terms[1:], terms[0])


def trace_latent_sites(trace: poutine.Trace) -> set[str]:
    """The names of the latent (sampled, not observed) sites of a trace."""
    return {
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    }


@torch.no_grad()
def latent_sites(program: Program, x: torch.Tensor) -> set[str]:
    """The names of the latent sites that ``program(x)`` samples."""
    return trace_latent_sites(poutine.trace(program).get_trace(x))


@contextmanager
def frozen(module: nn.Module | None):
    """Hold a module's parameters fixed (no gradients) and in eval mode for the duration, then
    restore both: a fixed model under a local fit or an HMC transition."""
    if module is None:
        yield
        return
    params = [p for p in module.parameters() if p.requires_grad]
    training = module.training
    for p in params:
        p.requires_grad_(False)
    module.eval()  # no dropout, and Pyro registers no frozen parameter
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        module.train(training)
