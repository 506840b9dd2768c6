"""Gold-standard posteriors: NUTS on z under the trained model, against the guide's q(z|x).

z is every latent site of the model joined into one vector per point, in the order the model
samples them (:class:`~inference.estimators.programs.LatentVector`); ``z_dim`` below is its length.

For a handful of points, Pyro's NUTS samples p(z | x) ∝ p(z) p(x | z) with the decoder fixed,
in independent chains run one after another, each from its own random start with its own
step-size and mass-matrix adaptation (Pyro's parallel chains start processes, which warn on a
machine of few cores), so that ArviZ's R̂ and ESS across them mean what they say. ArviZ
summarizes both posteriors, and everything lands in an ``InferenceData``: the NUTS draws, the
guide's draws, and importance samples with their log weights, with named dimensions.
"""

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS

from .arviz_import import arviz

if TYPE_CHECKING:
    from arviz import InferenceData
from .importance import weighted_proposals
from .programs import PARTICLES, LatentVector, frozen

__all__ = ["nuts", "guide_draws", "importance_draws", "mismatch", "inference_data", "summaries"]

def nuts(model, x: torch.Tensor, num_samples: int = 500, warmup: int = 500, chains: int = 4) -> torch.Tensor:
    """NUTS draws of z for each point of ``x`` from ``chains`` independent chains, each with its
    own warm-up: ``(chains, num_samples, B, z_dim)``."""
    if chains < 1:
        raise ValueError(f"evaluation.posterior_chains must be at least 1, got {chains}")
    latents, draws = LatentVector(model, x), []
    with frozen(model):
        for _ in range(chains):
            mcmc = MCMC(NUTS(model, target_accept_prob=0.8), num_samples=num_samples, warmup_steps=warmup, num_chains=1, disable_progbar=True)
            mcmc.run(x)
            draws.append(latents.join(mcmc.get_samples()))  # (S, B, z_dim)
    return torch.stack(draws).detach()


@torch.no_grad()
def guide_draws(model, guide, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Draws of z ~ q(z|x), the sites joined as the model orders them: ``(num_samples, B, z_dim)``."""
    latents = LatentVector(model, x)
    with pyro.plate(PARTICLES, num_samples, dim=latents.dim):
        return latents.join(poutine.trace(guide).get_trace(x).nodes)


def mismatch(nuts_z: torch.Tensor, guide_z: torch.Tensor) -> dict:
    """How far q(z|x) is from the NUTS posterior, per point and dimension, summarized: the mean
    of |Δ mean| / NUTS sd, and the geometric mean of guide sd / NUTS sd (1 is a match)."""
    reference = nuts_z.flatten(0, 1)
    sd = reference.std(0)
    shift = ((guide_z.mean(0) - reference.mean(0)).abs() / sd).mean().item()
    ratio = (guide_z.std(0) / sd).log().mean().exp().item()
    return {"mean_shift_in_sd": shift, "scale_ratio": ratio}


def inference_data(nuts_z: torch.Tensor, guide_z: torch.Tensor, importance_z: torch.Tensor, log_weights: torch.Tensor) -> "InferenceData":
    """An InferenceData with dims ``point`` and ``z_dim``: group ``posterior`` (NUTS, as chains
    and draws), ``guide`` (q draws), and ``importance`` (proposals z and their log weights)."""
    dims = {"z": ["point", "z_dim"]}
    coords = {"point": np.arange(nuts_z.shape[2]), "z_dim": np.arange(nuts_z.shape[3])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        az = arviz()
        data = az.from_dict(posterior={"z": nuts_z.cpu().numpy()}, coords=coords, dims=dims)
        data.add_groups(
            {
                "guide": {"z": guide_z.cpu().numpy()[None]},
                "importance": {"z": importance_z.cpu().numpy()[None], "log_weight": log_weights.cpu().numpy()[None]},
            },
            coords=coords,
            dims={"z": ["point", "z_dim"], "log_weight": ["point"]},
        )
    return data


def summaries(data: "InferenceData") -> dict:
    """``az.summary`` of the NUTS posterior (with R̂ and ESS) and of the guide's draws."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "nuts": arviz().summary(data, group="posterior"),
            "guide": arviz().summary(arviz().InferenceData(posterior=data.guide), kind="stats"),
        }


@torch.no_grad()
def importance_draws(model, guide, x: torch.Tensor, num_particles: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Proposals z ~ q(z|x) and their log weights: ``(K, B, z_dim)`` and ``(K, B)``."""
    log_w, proposals = weighted_proposals(model, guide, x, num_particles)
    return LatentVector(model, x).join(proposals.nodes), log_w
