"""Estimators: what turns a trained model and guide into numbers.

Importance sampling of log p(x) and the ELBO per data point (:mod:`.importance`), on the
program helpers that AIS, NUTS and the gap decomposition share (:mod:`.programs`); Pareto k̂
and effective sample size (:mod:`.diagnostics`); a split's numbers for ``metrics.json``
(:mod:`.metrics`); annealed importance sampling and BDMC (:mod:`.ais`); NUTS against the guide
(:mod:`.posterior`); the inference-gap decomposition (:mod:`.gaps`); passes sized to a memory
budget (:mod:`.memory`); the linear probe of ground-truth factors (:mod:`.probe`); and
denoised estimates with their PSNR (:mod:`.denoising`).
"""

from .ais import AISEstimate, adapted_step_sizes, ais, bidirectional
from .denoising import denoised, denoising_scores, psnr
from .diagnostics import pareto_k_and_ess, summarize, unreliable
from .gaps import fit_local, inference_gaps
from .importance import DEFAULT_CHUNK_SIZE, ImportanceEstimate, importance_sampling, log_importance_weights, posterior_mean, weighted_proposals
from .memory import PeakTensorMemory, pairs_within
from .metrics import bits_per_dim, evaluate, mean_and_stderr
from .probe import linear_probe_r2
from .programs import PARTICLE_DIM, PARTICLES, LatentVector, Simulation, frozen, latent_sites, particle_dim, simulated, site_log_probs, trace_latent_sites

__all__ = [
    "AISEstimate",
    "DEFAULT_CHUNK_SIZE",
    "ImportanceEstimate",
    "LatentVector",
    "PARTICLES",
    "PARTICLE_DIM",
    "PeakTensorMemory",
    "Simulation",
    "adapted_step_sizes",
    "ais",
    "bidirectional",
    "bits_per_dim",
    "denoised",
    "denoising_scores",
    "evaluate",
    "fit_local",
    "frozen",
    "importance_sampling",
    "inference_gaps",
    "latent_sites",
    "linear_probe_r2",
    "log_importance_weights",
    "mean_and_stderr",
    "pairs_within",
    "pareto_k_and_ess",
    "particle_dim",
    "posterior_mean",
    "psnr",
    "simulated",
    "site_log_probs",
    "summarize",
    "trace_latent_sites",
    "unreliable",
    "weighted_proposals",
]
