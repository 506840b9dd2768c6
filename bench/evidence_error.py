"""The Monte Carlo error of a sequence run's evidence estimates: importance sampling with the
guide as proposal (K particles a sequence) against sequential Monte Carlo (S particles, the
guide's proposal at each frame), each repeated from different seeds on the same test sequences
of a trained run.

    python -m bench.evidence_error RUN_DIR [RUN_DIR ...] [--sequences 20] [--repeats 5] [--particles 1000]

For each run and estimator it prints the mean log p̂(x₁:T) over the sequences and repeats (both
are stochastic lower bounds in expectation: the higher is the tighter), the Monte Carlo standard
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

from inference.estimators import importance_sampling
from inference.estimators.filtering import sequential_monte_carlo
from inference.runs.build import instantiate, prepared
from inference.schema import typed
from inference.training.checkpoint import load_checkpoint

from .common import machine


def trained(run: Path):
    """A finished run's model, guide and test sequences, on the CPU."""
    cfg = typed(OmegaConf.load(run / ".hydra" / "config.yaml"))
    data = instantiate(cfg.data)
    model, guide = prepared(cfg, data, torch.device("cpu"))
    state = load_checkpoint(run, map_location="cpu")
    model.load_state_dict(state["model"]), guide.load_state_dict(state["guide"])
    model.eval(), guide.eval()
    return model, guide, data.split("test")


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
    args = parser.parse_args()
    print(f"{machine()}; {args.sequences} test sequences, {args.repeats} repeats, {args.particles} particles each")
    print("| run | estimator | mean log p̂ | MC sd of one estimate (rms / median over sequences) | seconds a repeat |")
    print("|---|---|---:|---:|---:|")
    with pyro.validation_enabled(False):
        for run in args.runs:
            model, guide, x = trained(run)
            x = x[: args.sequences]
            estimators = {
                "importance sampling": lambda m, g, x: importance_sampling(m, g, x, args.particles).log_px,
                "SMC, guide proposal": lambda m, g, x: sequential_monte_carlo(m, x, args.particles, g).log_px,
            }
            for name, estimate in estimators.items():
                values, seconds = repeated(functools.partial(estimate, model, guide, x), args.repeats)
                variance = values.var(0, ddof=1)  # each sequence's, across repeats
                sd = f"{math.sqrt(float(variance.mean())):.2f} / {math.sqrt(float(np.median(variance))):.2f}"
                print(f"| {run.name} | {name} | {values.mean():.1f} | {sd} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
