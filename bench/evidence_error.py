"""The Monte Carlo error of a sequence run's evidence estimates: importance sampling with the
guide as proposal (K particles a sequence) against sequential Monte Carlo (S particles, the
guide's proposal at each frame, or with ``--defensive`` also the defensive mixture of the guide's
and the model's own), each repeated from different seeds on the same test sequences
of a trained run.

    python -m bench.evidence_error RUN_DIR [RUN_DIR ...] [--sequences 20] [--repeats 5] [--particles 1000] [--latent-draws M ...] [--defensive]

For each run and estimator it prints the mean log p̂(x₁:T) over the sequences and repeats (both
are stochastic lower bounds in expectation: the higher is the tighter), beside the ELBO split into
the frames' expected log-likelihood and the latents' KL term (20 guide draws a repeat), the Monte Carlo standard
deviation of one sequence's estimate (each sequence's standard deviation across repeats: the
error a single estimate carries, as the root mean square over sequences and the median), and
the seconds of one repeat. Not a speed benchmark: the seconds say what each standard deviation costs.
"""

import argparse
import functools
import math
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from omegaconf import OmegaConf
from pyro import poutine

from inference.estimators import importance_sampling
from inference.estimators.filtering import sequential_monte_carlo
from inference.runs.build import instantiate, trained
from inference.schema import typed

from .common import machine


def loaded(run: Path):
    """A finished run's model, guide and test sequences, on the CPU."""
    cfg = typed(OmegaConf.load(run / ".hydra" / "config.yaml"))
    data = instantiate(cfg.data)
    model, guide = trained(cfg, data, run, torch.device("cpu"))
    model.eval(), guide.eval()
    return model, guide, data.split("test")


@torch.no_grad()
def elbo_parts(model, guide, x: torch.Tensor, draws: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ELBO's two parts per sequence, averaged over ``draws`` draws of the guide: the
    frames' expected log-likelihood E_q log p(x₁:T | z) and the KL term E_q[log q − log p] of
    the latents (states, and sequence latents such as the drive phase)."""
    likelihood, kl = torch.zeros(x.shape[0]), torch.zeros(x.shape[0])
    for _ in range(draws):
        guided = poutine.trace(guide).get_trace(x)
        modelled = poutine.trace(poutine.replay(model, trace=guided)).get_trace(x)
        guided.compute_log_prob(), modelled.compute_log_prob()
        for name, site in modelled.nodes.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                likelihood += site["log_prob"] / draws
            else:
                kl += (guided.nodes[name]["log_prob"] - site["log_prob"]) / draws
    return likelihood, kl


@torch.no_grad()
def repeated(estimate, repeats: int) -> tuple[np.ndarray, float]:
    """``repeats`` draws of ``estimate()`` (a ``(sequences,)`` tensor), each from its own seed,
    and the mean seconds of one."""
    values, start = [], time.perf_counter()
    for seed in range(repeats):
        pyro.set_rng_seed(1000 + seed)
        values.append(estimate().double().numpy())
    return np.stack(values), (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished runs of a sequence model (model=state_space)")
    parser.add_argument("--sequences", type=int, default=20, help="the first N test sequences")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--particles", type=int, default=1000, help="K of importance sampling and S of SMC alike")
    parser.add_argument("--latent-draws", type=int, nargs="*", default=[], help="also SMC with the sequence latents drawn M times a sequence (latent_draws)")
    parser.add_argument("--defensive", action="store_true", help="also each SMC with the defensive proposal (evaluation.smc_proposal=defensive)")
    args = parser.parse_args()
    print(f"{machine()}; {args.sequences} test sequences, {args.repeats} repeats, {args.particles} particles each")
    print("| run | estimator | mean log p̂ | MC sd of one estimate (rms / median over sequences) | seconds a repeat |")
    print("|---|---|---:|---:|---:|")
    with pyro.validation_enabled(False):
        for run in args.runs:
            model, guide, x = loaded(run)
            x = x[: args.sequences]
            smc = {
                (draws, defensive): functools.partial(
                    lambda m, g, x, draws, defensive: sequential_monte_carlo(m, x, args.particles, g, latent_draws=draws, defensive=defensive).log_px,
                    draws=draws, defensive=defensive,
                )
                for draws in [None, *args.latent_draws]
                for defensive in ([False, True] if args.defensive else [False])
            }
            estimators = {
                "importance sampling": lambda m, g, x: importance_sampling(m, g, x, args.particles).log_px,
                **{
                    "SMC, " + ("defensive" if defensive else "guide") + " proposal" + (f", {draws} draws of the sequence latents" if draws else ""): estimate
                    for (draws, defensive), estimate in smc.items()
                },
            }
            pyro.set_rng_seed(0)
            likelihood, kl = elbo_parts(model, guide, x, args.repeats * 20)
            print(f"| {run.name} | ELBO = E_q log p(x given z) − KL | {(likelihood - kl).mean():.1f} = {likelihood.mean():.1f} − {kl.mean():.1f} | | |")
            for name, estimate in estimators.items():
                values, seconds = repeated(functools.partial(estimate, model, guide, x), args.repeats)
                variance = values.var(0, ddof=1)  # each sequence's, across repeats
                sd = f"{math.sqrt(float(variance.mean())):.2f} / {math.sqrt(float(np.median(variance))):.2f}"
                print(f"| {run.name} | {name} | {values.mean():.1f} | {sd} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
