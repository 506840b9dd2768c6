"""What the estimators need to know of a Pyro program, shared by importance sampling, AIS,
NUTS, the gap decomposition and the figures: the data plate and the particle dimension, the
latent sites of a program, its log-densities per data point, and holding it fixed.

Every sample site sits under ``pyro.plate("data", B)``, the rightmost batch dimension; the
estimators put their particles in an outer plate at :data:`PARTICLE_DIM`, left of it, so that
the traces keep the data dimension and log-densities come out ``(K, B)``-shaped.
"""

from collections.abc import Callable
from contextlib import contextmanager

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import nn

__all__ = ["DATA_PLATE", "PARTICLE_DIM", "Program", "frozen", "latent_sites", "site_log_probs", "trace_latent_sites"]

Program = Callable[[torch.Tensor], None]

DATA_PLATE = "data"
PARTICLE_DIM = -2  # the model's data plate is the rightmost batch dim, -1


def site_log_probs(trace: poutine.Trace, K: int, B: int, observed: bool | None) -> torch.Tensor:
    """Sum the log densities of a trace's sample sites into a ``(K, B)``-shaped tensor.

    :param observed: ``True`` for observed sites only, ``False`` for latent sites only,
        ``None`` for all.
    """
    terms = []
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue  # plates appear in traces as subsample sites
        if not any(frame.name == DATA_PLATE for frame in site["cond_indep_stack"]):
            raise ValueError(
                f"site {name!r} is not inside pyro.plate({DATA_PLATE!r}, B): per-datapoint "
                "log p(x) needs every sample site of the model and guide under the data plate"
            )
        if observed is not None and site["is_observed"] != observed:
            continue
        terms.append(torch.broadcast_to(site["fn"].log_prob(site["value"]), (K, B)))
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
