"""The inference-gap decomposition (Cremer, Li & Duvenaud 2018).

    log p(x) − ELBO[q_amortized] = (log p(x) − ELBO[q*_local])        approximation gap
                                 + (ELBO[q*_local] − ELBO[q_amortized])  amortization gap

q*_local is the best posterior of the guide's own family for each data point: the guide with
its encoder replaced by a table of free per-point outputs (:func:`localized`, the
construction of ``guide=local``), initialized at the
encoder's outputs and optimized by SVI on those points until the ELBO stops rising. A flexible
local guide (an IAF with free per-point base and context) shows how much of the approximation
gap a richer family would close.
"""

import copy
import math
from functools import partial

import torch
from torch import nn

from pyro.distributions.transforms import conditional_affine_autoregressive
from pyro.infer import Trace_ELBO

from guides import AmortizedFlow, PointTable
from models.capabilities import capabilities_of

from .importance import DEFAULT_CHUNK_SIZE, importance_sampling
from .metrics import mean_and_stderr
from .programs import frozen, latent_sites, particle_dim

__all__ = ["localized", "fit_local", "inference_gaps"]


def localized(guide: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy of ``guide`` whose encoder is a table of per-point outputs for ``x``, starting at
    what the encoder outputs for them: the non-amortized member of the same family."""
    if not capabilities_of(guide).encoder:
        raise ValueError(f"{type(guide).__name__} declares no encoder (Capabilities(encoder=True)) to replace with per-point parameters")
    local = copy.deepcopy(guide)
    with torch.no_grad():
        local.encoder = PointTable(x, guide.encoder(x))
    return local


def local_flow(guide: nn.Module, x: torch.Tensor, layers: int = 2, context_dim: int = 8) -> nn.Module:
    """An IAF guide with a free base loc, scale and context per point; the base starts at the
    amortized guide's Gaussian where it has one."""
    z_dim = guide.z_dim
    init = torch.zeros(x.shape[0], 2 * z_dim + context_dim, device=x.device)
    if capabilities_of(guide).posterior_params:
        with torch.no_grad():
            z_loc, z_scale = guide.posterior_params(x)
            init[:, :z_dim] = z_loc
            init[:, z_dim : 2 * z_dim] = torch.log(torch.expm1((z_scale - guide.scale_floor).clamp(min=1e-6)))
    transform = partial(conditional_affine_autoregressive, hidden_dims=[4 * z_dim, 4 * z_dim])
    flow = AmortizedFlow(lambda i, o: PointTable(x, init), x.shape[1], z_dim, transform, layers, context_dim)
    return flow.to(x.device)


def fit_local(
    model: nn.Module,
    local: nn.Module,
    x: torch.Tensor,
    *,
    lr: float = 1e-2,
    num_particles: int = 16,
    max_steps: int = 5000,
    check_every: int = 100,
    tolerance: float = 1e-3,
    decays: int = 3,
) -> int:
    """Maximize the ELBO of ``local`` on ``x`` with the model fixed, until it stops rising.

    Every ``check_every`` steps the mean ELBO per point is estimated with 256 samples; when it
    rose by less than ``tolerance`` nats the learning rate drops tenfold (the noise of the
    stochastic gradients, not the optimum, limits a constant rate), and after ``decays`` drops
    the fit ends. Every check draws the same random numbers (one seed for the fit, per-point
    streams), so that two checks differ by what the fit changed, not by Monte Carlo noise,
    which at 256 samples is far above ``tolerance``. :returns: the steps taken.
    """
    nesting = -1 - particle_dim(model, local, x[:1])  # the data plate, and any plate of observed sites inside it
    elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=nesting)
    optimizer = torch.optim.Adam(local.parameters(), lr=lr)
    seed = int(torch.randint(2**62, ()))  # common random numbers for every check
    with frozen(model):
        best, left = -math.inf, decays
        for step in range(1, max_steps + 1):
            optimizer.zero_grad(set_to_none=True)
            elbo.differentiable_loss(model, local, x).backward()
            optimizer.step()
            if step % check_every == 0:
                current = importance_sampling(model, local, x, num_particles=256, seed=seed).elbo.mean().item()
                if current < best + tolerance:
                    if left == 0:
                        return step
                    left -= 1
                    for group in optimizer.param_groups:
                        group["lr"] /= 10
                best = max(best, current)
        return max_steps


def inference_gaps(
    model: nn.Module,
    guide: nn.Module,
    x: torch.Tensor,
    num_particles: int = 5000,
    max_steps: int = 5000,
    flow: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    log_jacobian: float = 0.0,
) -> dict:
    """Approximation, amortization and inference gaps on the points ``x``, each with its
    standard error over the points, in nats per data point.

    log p(x) is estimated by importance sampling with the best of the local guides as proposal,
    with ``num_particles``; the ELBOs average 1000 samples per point. With ``flow``, a local
    IAF (for guides of one latent site "z") adds the ELBO a flexible family reaches. The
    estimates evaluate ``chunk_size`` particle × point pairs a pass, each point's draws from a
    seed of its own, so that the numbers do not depend on ``chunk_size``. ``log_jacobian`` is
    added to each log-density (data the model sees standardized, ``Dataset.log_jacobian``).
    """
    model.eval(), guide.eval()

    def estimate(proposal, num_particles):
        seed = int(torch.randint(2**62, ()))  # from the run's RNG, not from how the points are split
        estimate = importance_sampling(model, proposal, x, num_particles, chunk_size, seed=seed)
        return estimate._replace(log_px=estimate.log_px + log_jacobian, elbo=estimate.elbo + log_jacobian)

    local = localized(guide, x)
    local_steps = fit_local(model, local, x, max_steps=max_steps)
    elbo = {"amortized": estimate(guide, 1000).elbo, "local": estimate(local, 1000).elbo}
    proposal = local
    gaps = {"points": x.shape[0], "local_steps": local_steps}
    if flow and latent_sites(guide, x) == {"z"}:  # a flow over one latent site
        flow = local_flow(guide, x)
        gaps["flow_steps"] = fit_local(model, flow, x, max_steps=max_steps)
        elbo["local_flow"] = estimate(flow, 1000).elbo
        proposal = flow if elbo["local_flow"].mean() > elbo["local"].mean() else local
    log_px = estimate(proposal, num_particles).log_px
    gaps["log_px"] = {**mean_and_stderr(log_px), "num_particles": num_particles}
    for name, values in elbo.items():
        gaps[f"{name}_elbo"] = mean_and_stderr(values)
    gaps["approximation"] = mean_and_stderr(log_px - elbo["local"])
    gaps["amortization"] = mean_and_stderr(elbo["local"] - elbo["amortized"])
    gaps["inference"] = mean_and_stderr(log_px - elbo["amortized"])
    return gaps

