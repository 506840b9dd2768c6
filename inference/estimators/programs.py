"""What the estimators need to know of a Pyro program, shared by importance sampling, AIS,
NUTS, the gap decomposition and the figures: the data plate and the particle dimension, the
latent sites of a program, its log-densities per data point, and holding it fixed.

Every sample site sits under ``pyro.plate("data", B)``, which may hold plates of its own (a
pixel plate, a time plate). The estimators put their particles in an outer plate
``pyro.plate("particles", K)`` left of every batch dimension the programs use
(:func:`particle_dim`, as Pyro's ELBOs find ``max_plate_nesting``), so that the traces keep the
data dimension; each site's log-density is summed over its other dimensions, per particle and
data point, into a ``(K, B)``-shaped tensor (:func:`site_log_probs`).

A program may take keyword arguments per data point besides x (its batch keys, see
:mod:`inference.data.dataset`): the estimators take them as ``extra``, a mapping of name to a
tensor whose first dimension is x's points, slice them with x (:func:`sliced`) and call
``program(x, **extra)``.
"""

from collections.abc import Callable, Mapping
from contextlib import contextmanager
from typing import NamedTuple

import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.distributions.util import scale_and_mask
from pyro.poutine.uncondition_messenger import UnconditionMessenger
from pyro.poutine.util import site_is_subsample
from torch import nn

__all__ = [
    "DATA_PLATE",
    "PARTICLES",
    "PARTICLE_DIM",
    "LatentVector",
    "Extra",
    "Program",
    "Simulation",
    "frozen",
    "data_dim",
    "latent_sites",
    "particle_dim",
    "replayed_traces",
    "rng_kept",
    "simulated",
    "site_log_probs",
    "sliced",
    "trace_latent_sites",
]

Program = Callable[[torch.Tensor], None]
Extra = Mapping[str, torch.Tensor]  # a program's batch keys: name → per-point tensor

DATA_PLATE = "data"
PARTICLES = "particles"
PARTICLE_DIM = -2  # for programs whose only plate is the data plate, at dim -1: see particle_dim


def sliced(extra: Extra | None, index: slice | torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch keys' tensors of the points ``x[index]``."""
    return {key: value[index] for key, value in (extra or {}).items()}


def rng_kept(device: torch.device):
    """A context whose random draws leave the global RNG (and the device's) as they were."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


@torch.no_grad()
def _one_point_trace(model: Program, x: torch.Tensor) -> poutine.Trace:
    """The model's trace on the first point of ``x``, hidden from enclosing handlers, the RNG kept."""
    with rng_kept(x.device), poutine.block():
        return poutine.trace(model).get_trace(x[:1])


@torch.no_grad()
def replayed_traces(model: Program | None, guide: Program | None, *args, **kwargs) -> tuple[poutine.Trace | None, poutine.Trace | None]:
    """The trace of ``guide(*args, **kwargs)`` and that of the model replayed on it (either
    program may be None, its trace then too): a first look at the programs, without gradients,
    hidden from enclosing handlers, and leaving the global RNG as it was."""
    device = next((a.device for a in args if torch.is_tensor(a)), torch.device("cpu"))
    with rng_kept(device), poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs) if guide is not None else None
        model_trace = None
        if model is not None:
            replayed = poutine.replay(model, trace=guide_trace) if guide_trace is not None else model
            model_trace = poutine.trace(replayed).get_trace(*args, **kwargs)
    return guide_trace, model_trace


def particle_dim(model: Program | None, guide: Program | None, x: torch.Tensor, extra: Extra | None = None) -> int:
    """The dimension for the particle plate: one left of every plate that the sites of
    ``guide(x)`` and ``model(x)`` replayed on it use (Pyro's ``max_plate_nesting``, negated,
    minus one); −2 for a program whose one plate is the data plate. Found from a trace of ``x``,
    as Pyro's ELBOs find it; the global RNG is left as it was."""
    traces = [trace for trace in replayed_traces(model, guide, x, **(extra or {})) if trace is not None]
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
        "sample site of the model and guide under the data plate (a program that names its data plate "
        "otherwise: model.data_plate=NAME)"
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


def site_log_probs(trace: poutine.Trace, K: int, B: int, observed: bool | None, names=None) -> torch.Tensor:
    """Sum the log densities of a trace's sample sites into a ``(K, B)``-shaped tensor: over
    the sites, and over each site's plates inside the data plate. The trace is of a program run
    inside the particle plate.

    :param observed: ``True`` for observed sites only, ``False`` for latent sites only,
        ``None`` for all.
    :param names: only these sites (a program conditioned on latent values marks them observed).
    """
    terms = []
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue  # plates appear in traces as subsample sites
        _plate_dim(name, site, DATA_PLATE)  # every site, weighed or not, must be per data point
        if (observed is not None and site["is_observed"] != observed) or (names is not None and name not in names):
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


class LatentVector:
    """The latent sites of a program, all under the data plate and in no plate inside it, as
    one vector per data point, for the methods that move z as a whole (AIS's HMC) or report it
    as one (NUTS, the posterior figures): the sites in the order the model samples them, each
    flattened over its event shape. Plates inside the data plate may hold observed sites (a
    pixel plate under the data plate): a latent then has a size-1 dimension for each, which the
    vector leaves out. ``split`` and ``join`` convert between the vector ``(..., B, D)`` and the
    sites' values ``(..., B, 1, …, *event_shape)``; ``dim`` is the particle plate's dimension,
    one left of the data plate."""

    def __init__(self, model: Program, x: torch.Tensor):
        trace = _one_point_trace(model, x)
        latent = trace_latent_sites(trace)
        self.sites = [(name, trace.nodes[name]["fn"].event_shape) for name in trace.nodes if name in latent]  # in trace order
        data = data_dim(self.sites[0][0], trace.nodes[self.sites[0][0]]) if self.sites else -1
        self.inner, self.dim = -1 - data, data - 1  # the dimensions right of the data plate's; the particles'

    @staticmethod
    def unsupported(model: Program, guide: Program | None, x: torch.Tensor) -> str | None:
        """Why the program's latents are not one real vector per point (a discrete or
        constrained site, a site in a plate inside the data plate); None where they are."""
        trace = _one_point_trace(model, x)
        for name in trace_latent_sites(trace):
            site = trace.nodes[name]
            inner = [frame.name for frame in site["cond_indep_stack"] if frame.vectorized and frame.name != DATA_PLATE]
            if inner:
                return f"latents under the data plate alone; the model's latent site {name!r} sits in the plate {inner[0]!r} inside it"
            support = site["fn"].support
            while isinstance(support, constraints.independent):
                support = support.base_constraint
            if support.is_discrete:
                return f"continuous latents; the model has a discrete latent site {name!r}"
            if support is not constraints.real:
                return f"unconstrained latents; the model's latent site {name!r} has support {support}"
        return None

    def split(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        values, start, inner = {}, 0, (1,) * self.inner
        for name, shape in self.sites:
            values[name] = z[..., start : start + shape.numel()].reshape(*z.shape[:-1], *inner, *shape)
            start += shape.numel()
        return values

    def join(self, values) -> torch.Tensor:
        """:param values: site name → value (a trace's nodes, or MCMC samples)."""
        parts = []
        for name, shape in self.sites:
            value = values[name]["value"] if isinstance(values[name], dict) else values[name]
            parts.append(value.reshape(*value.shape[: value.dim() - len(shape) - self.inner], shape.numel()))
        return torch.cat(parts, -1)


class Simulation(NamedTuple):
    trace: poutine.Trace  #: the run, latents included
    x: torch.Tensor  #: x' drawn, shaped as the x the model was run on
    mean: torch.Tensor | None  #: the observation distribution's mean, where it has one


class _Released(UnconditionMessenger):
    """``poutine.uncondition``, but for ``pyro.deterministic`` sites: released, such a site
    would be drawn from its Delta, which broadcasts a value its plate already batches once
    more (the pendulum's drive amplitude, (B,) drawn as (B, B))."""

    def _pyro_sample(self, msg):
        if not msg["infer"].get("_deterministic"):
            super()._pyro_sample(msg)


@torch.no_grad()
def simulated(model: Program, x: torch.Tensor, latents: dict[str, torch.Tensor] | None = None) -> Simulation:
    """Draws (z, x') ~ p(z, x), or x' ~ p(x | z) for given ``latents`` (site name → value), as
    many as ``x`` has points: the model run with its observations released
    (``poutine.uncondition``). A program needs no sampler of its own, but exactly one
    observation site, whose draws are reshaped to ``x``'s shape."""
    released = _Released()(model)
    program = released if latents is None else poutine.condition(released, data=latents)  # outside: the latents stay given
    trace = poutine.trace(program).get_trace(x)
    observed = [name for name, site in trace.nodes.items() if site["type"] == "sample" and site["infer"].get("was_observed")]
    if len(observed) != 1 or trace.nodes[observed[0]]["value"].numel() != x.numel():
        raise ValueError(f"simulating data from the model needs one observation site holding x; this model observes {observed}")
    site = trace.nodes[observed[0]]
    try:
        mean = site["fn"].mean.reshape(x.shape)
    except NotImplementedError:
        mean = None
    return Simulation(trace, site["value"].reshape(x.shape), mean)


@contextmanager
def frozen(module: nn.Module | None):
    """Hold a module's parameters fixed (no gradients) and in eval mode for the duration, then
    restore both: a fixed model under a local fit or an HMC transition. A program that is no
    module (a function) is left as it is."""
    if not isinstance(module, nn.Module):
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
