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
  in passes of as many particle × point pairs as the suite's memory budget chose.

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

from inference.train import train

from .common import machine
from .handwritten_vae import HandVAE, iwae_log_px, train_budgeted
from .presets import PRESETS, ROOT


def row(who, epochs, train_s, eval_s, other_s, mean, stderr):
    total = train_s + eval_s + other_s
    return f"| {who} | {epochs} | {train_s:.0f} | {eval_s:.0f} | {other_s:.0f} | {total:.0f} | {mean:.2f} ± {stderr:.2f} |"


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

    start = time.perf_counter()
    metrics = train(cfg, run_dir)
    wall = time.perf_counter() - start
    t, e = metrics["train"], metrics["test"]
    print(row("suite", t["epochs"], t["seconds"], e["seconds"], wall - t["seconds"] - e["seconds"], e["log_px"]["mean"], e["log_px"]["stderr"]), flush=True)

    start = time.perf_counter()
    pyro.set_rng_seed(0)
    data = instantiate(cfg.data)
    model = HandVAE(**arch)
    loaded = time.perf_counter() - start
    epochs, train_s = train_budgeted(model, data.train, max_epochs=args.epochs, schedule=schedule, dynamic=data.binarize == "dynamic", **opt)
    start = time.perf_counter()
    log_px = iwae_log_px(model.eval(), data.test[: args.points], K=args.particles, chunk_size=e["chunk_size"])
    eval_s = time.perf_counter() - start
    stderr = log_px.std().item() / math.sqrt(len(log_px))
    print(row("PyTorch", epochs, train_s, eval_s, loaded, log_px.mean().item(), stderr), flush=True)
    print(f"# {e['log_px']['n']} test points in passes of {e['chunk_size']} pairs; suite / PyTorch: "
          f"training {t['seconds'] / train_s:.2f}, evaluation {e['seconds'] / eval_s:.2f}, total {wall / (train_s + eval_s + loaded):.2f}")


if __name__ == "__main__":
    main()
