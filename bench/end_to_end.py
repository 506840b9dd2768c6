"""End to end: a paper preset trained for a fixed number of epochs, then log p(x) with K=5000
on the whole test set, against a hand-written PyTorch script of the same budget.

    python -m bench.end_to_end [--preset iwae_mnist_1layer] [--epochs 10] [--points N] [--data DIR]

- suite: ``inference.train.train`` with ``experiment=PRESET train.epochs=EPOCHS
  evaluation.splits=[test] evaluation.prior_proposal=false evaluation.figures=false``: the run
  as a user starts it, checkpoints and ``metrics.json`` included. Its training seconds (the SVI
  loop) and evaluation seconds come from ``metrics.json``; "other" is the rest of the call's
  wall time (data loading, building the networks, checkpoints, writing results).
- PyTorch: ``bench/handwritten_vae.py``, the same architecture, optimizer, learning-rate
  schedule, data and epochs, then the IWAE estimate with the same K on the same test points,
  in passes of as many particle × point pairs as the suite's memory budget chose (measured
  the same way, before the suite runs).

The hand-written script runs before and after the suite and the ratios are against the mean of
the two: on shared machines the speed drifts by up to 2× over minutes, which a single
sequential comparison cannot tell from a difference between the implementations.

Needs the benchmark data in --data DIR (or $VAE_DATA). Run it alone: a second torch process on
the same cores slows both many times over.
"""

import argparse
import math
import os
import time
from pathlib import Path

import pyro
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from inference.memory import pairs_within
from inference.train import build, train

from .common import machine
from .handwritten_vae import HandVAE, iwae_log_px, train_budgeted
from .presets import PRESETS, ROOT


def row(who, epochs, train_s, eval_s, other_s, mean, stderr):
    total = train_s + eval_s + other_s
    return f"| {who} | {epochs} | {train_s:.0f} | {eval_s:.0f} | {other_s:.0f} | {total:.0f} | {mean:.2f} ± {stderr:.2f} |"


def handwritten(cfg, arch, opt, schedule, epochs: int, particles: int, points: int | None, chunk_size: int) -> dict:
    """The hand-written script: load the data, train, estimate; seconds of each."""
    start = time.perf_counter()
    pyro.set_rng_seed(0)
    data = instantiate(cfg.data)
    model = HandVAE(**arch)
    loaded = time.perf_counter() - start
    epochs, train_s = train_budgeted(model, data.train, max_epochs=epochs, schedule=schedule, dynamic=data.binarize == "dynamic", **opt)
    start = time.perf_counter()
    log_px = iwae_log_px(model.eval(), data.test[:points], K=particles, chunk_size=chunk_size)
    eval_s = time.perf_counter() - start
    stderr = log_px.std().item() / math.sqrt(len(log_px))
    return dict(epochs=epochs, train_s=train_s, eval_s=eval_s, other_s=loaded, mean=log_px.mean().item(), stderr=stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="iwae_mnist_1layer", choices=[p for p in PRESETS if PRESETS[p][0] == "mnist"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--particles", type=int, default=5000)
    parser.add_argument("--points", type=int, default=None, help="the first N test points (default: all)")
    parser.add_argument("--data", type=Path, default=os.environ.get("VAE_DATA"), required="VAE_DATA" not in os.environ,
                        help="the folder of the benchmark data sets (default: $VAE_DATA)")
    args = parser.parse_args()
    folder, _, arch, opt, schedule = PRESETS[args.preset]
    overrides = [
        f"experiment={args.preset}",
        f"data.root={args.data / folder}",
        f"train.epochs={args.epochs}",
        f"evaluation.num_particles={args.particles}",
        f"evaluation.max_points={args.points or 'null'}",
        "evaluation.splits=[test]",
        "evaluation.prior_proposal=false",
        "evaluation.figures=false",
        "train.progress=false",
        "train.device=cpu",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    run_dir = ROOT / "runs" / "bench" / f"end_to_end_{args.preset}_{time.strftime('%Y%m%d-%H%M%S')}"

    print(f"# {args.preset}: {args.epochs} epochs, then K={args.particles} on the test set; {machine()}")
    print("| who | epochs | train s | eval s | other s | total s | test log p̂(x) ± stderr |")
    print("|---|---:|---:|---:|---:|---:|---:|", flush=True)

    data = instantiate(cfg.data)
    model, guide = build(cfg, data)
    chunk_size = pairs_within(model.eval(), guide.eval(), data.test, cfg.evaluation.memory_budget_mb)  # what the run will choose
    hand = [handwritten(cfg, arch, opt, schedule, args.epochs, args.particles, args.points, chunk_size)]
    print(row("PyTorch, before", *hand[0].values()), flush=True)

    start = time.perf_counter()
    metrics = train(cfg, run_dir)
    wall = time.perf_counter() - start
    t, e = metrics["train"], metrics["test"]
    suite = dict(epochs=t["epochs"], train_s=t["seconds"], eval_s=e["seconds"], other_s=wall - t["seconds"] - e["seconds"],
                 mean=e["log_px"]["mean"], stderr=e["log_px"]["stderr"])
    print(row("suite", *suite.values()), flush=True)

    hand.append(handwritten(cfg, arch, opt, schedule, args.epochs, args.particles, args.points, chunk_size))
    print(row("PyTorch, after", *hand[1].values()), flush=True)
    mean = {key: (hand[0][key] + hand[1][key]) / 2 for key in ("train_s", "eval_s", "other_s")}
    print(f"# {e['log_px']['n']} test points in passes of {e['chunk_size']} pairs; suite / mean of the two PyTorch runs: "
          f"training {suite['train_s'] / mean['train_s']:.2f}, evaluation {suite['eval_s'] / mean['eval_s']:.2f}, "
          f"total {wall / sum(mean.values()):.2f}")


if __name__ == "__main__":
    main()
