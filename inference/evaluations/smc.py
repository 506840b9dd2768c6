"""log p̂(x₁:T) of whole sequences by sequential Monte Carlo: the particle filter run over every
frame, with the guide's q(z_t | z_{t−1}, x_t:T) (or the model's transition) as the proposal at
each frame and systematic resampling where a sequence's effective sample size falls under half
(:func:`~inference.estimators.filtering.sequential_monte_carlo`). Importance sampling weighs
whole trajectories, whose weights degenerate as the sequence grows; resampling keeps the
particles where the frames so far put them, so that the estimate stays tight over long sequences."""

import time

from ..data import Dataset
from ..estimators.diagnostics import effective_sample_size
from ..estimators.filtering import sequential_monte_carlo
from ..estimators.metrics import mean_and_stderr
from .base import Context, Programs, positive_ints
from .forecast import sequences_reason

__all__ = ["LogPxSmc"]

PROPOSALS = ("guide", "transition", "defensive")


class LogPxSmc:
    """``log_px_smc``: the mean log p̂(x₁:T) of the split's sequences and its standard error
    (over sequences, as ``log_px``'s), with ``particles`` particles a sequence; the proposal
    (``guide``: the sequence guide's; ``transition``: the model's prior and transition, the
    bootstrap filter), the final effective sample sizes (median, smallest) and the mean number
    of resamplings a sequence. ``defensive``: half the particles from the guide's proposal and
    half from the model's own, whose angles (a transition's ``angles``) are read from each frame
    by the model's decoder, weighed by the mixture: where the guide fails on a frame unlike
    those it was trained on (the pendulum near the top), the estimate does not collapse with it.
    Each sequence's value goes to ``per_point.npz`` as
    ``log_px_smc``, beside importance sampling's ``log_px`` for paired comparisons.

    :param particles: S, the particles per sequence.
    :param proposal: ``guide``, ``transition`` or ``defensive``.
    :param latent_draws: M, for a transition with latents of each sequence: drawn M times a
        sequence, each draw filtered by S/M particles (None: each particle its own).
    """

    keys = ("log_px_smc",)

    def __init__(self, particles: int = 1000, proposal: str = "guide", latent_draws: int | None = None):
        positive_ints("a positive number of particles", particles=particles)
        if proposal not in PROPOSALS:
            raise ValueError(f"evaluation.smc_proposal must be one of {', '.join(PROPOSALS)}, got {proposal!r}")
        if latent_draws is not None:
            positive_ints("a positive number of draws", latent_draws=latent_draws)
            if particles % latent_draws:
                raise ValueError(
                    f"evaluation.smc_latent_draws={latent_draws} does not divide evaluation.smc_particles={particles}: each draw gets as many "
                    "particles; give a divisor (or null)"
                )
        self.particles, self.proposal, self.latent_draws = particles, proposal, latent_draws

    def unsupported(self, programs: Programs, data: Dataset) -> str | None:
        return sequences_reason(programs, data)

    def __call__(self, context: Context) -> dict:
        start = time.perf_counter()
        guide = None if self.proposal == "transition" else context.guide
        if guide is not None and not all(hasattr(guide, name) for name in ("summaries", "step", "latents_proposal")):
            raise ValueError(
                f"evaluation.smc_proposal={self.proposal} proposes each frame's state from the guide's q(z_t | z_t-1, x), which {type(guide).__name__} "
                "does not offer (summaries, step, latents_proposal, as guide=sequence has them); use evaluation.smc_proposal=transition"
            )
        context.model.eval(), context.guide.eval()
        estimate = sequential_monte_carlo(context.model, context.x, self.particles, guide, self.latent_draws, defensive=self.proposal == "defensive")
        log_px = estimate.log_px + context.dataset.log_jacobian
        context.per_point["log_px_smc"] = log_px.cpu().numpy()
        ess = effective_sample_size(estimate.log_weights)
        return {"log_px_smc": {
            **mean_and_stderr(log_px),
            "particles": self.particles,
            "proposal": self.proposal,
            "latent_draws": self.latent_draws,
            "ess": {"median": ess.median().item(), "min": ess.min().item()},
            "resamplings": estimate.resamplings.float().mean().item(),
            "seconds": time.perf_counter() - start,
        }}
