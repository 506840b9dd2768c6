"""End to end: a paper preset trained for a fixed number of epochs, then log p(x) with K=5000
on the whole test set, against a hand-written PyTorch script of the same budget.

    python -m bench.end_to_end [--preset iwae_mnist_1layer] [--objective trace_elbo] [--epochs 10] [--points N] [--no-run] [--data DIR]
                               [--device cpu|cuda]

Two measurements:

1. run: the run as a user starts it, ``inference.train.train`` with ``experiment=PRESET
   train.epochs=EPOCHS evaluation.splits=[test] evaluation.prior_proposal=false
   evaluation.figures=false``, checkpoints and ``metrics.json`` included: its training seconds
   (the SVI loop), evaluation seconds, and the rest of the call's wall time (data, networks,
   checkpoints, results). Absolute figures, for the 8-minute target; on shared machines they
   drift by up to 2× over minutes.
2. interleaved: the same work beside ``bench/handwritten_vae.py`` (the same architecture,
   learning rate and schedule, data and epochs, then the IWAE estimate with the same K in
   passes of the same size), in one process, taking turns: an epoch of the suite's training
   loop (``inference.training.fit`` continuing from its progress, with the preset's optimizer:
   fused Adam, ``optim.fused=true``, by default), an epoch of the hand-written script with plain
   Adam (what a researcher writes), and one with fused Adam (the suite's default optimizer,
   so that the ratio against it is the suite's own overhead); then the test set in slices of
   ``--slice`` points, each estimated by the suite's ``evaluate`` (diagnostics and curve
   included) and by the hand-written estimate of each hand-written model. Drift hits all three
   alike, so the ratios can be read.

Needs the benchmark data in --data DIR (or $VAE_DATA). Run it alone: a second torch process on
the same cores slows both many times over.
"""

import argparse
import math
import os
import time
from pathlib import Path

import pyro
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from inference.estimators import pairs_within
from inference.estimators.metrics import evaluate, mean_and_stderr
from inference.runs import build, train
from inference.training import fit, parameters_of

from .common import benchmark_device, machine, synchronize
from .handwritten_vae import HandTraining, HandVAE, iwae_log_px
from .presets import PRESETS, ROOT

# The hand-written script's Adam: plain (torch.optim.Adam as a researcher writes it) and fused
# (torch.optim.Adam(fused=True), the suite's default optim.fused=true).
HAND_OPTIMIZERS = ("plain", "fused")


def row(who, train_s, eval_s, other_s, mean=None, stderr=None):
    estimate = "" if mean is None else f"{mean:.2f} ± {stderr:.2f}"
    return f"| {who} | {train_s:.0f} | {eval_s:.0f} | {other_s:.0f} | {train_s + eval_s + other_s:.0f} | {estimate} |"


def pooled(slices: list[dict]) -> tuple[float, float]:
    """Mean and standard error over all points from each slice's ``mean``, ``stderr`` and ``n``."""
    n = [s["n"] for s in slices]
    N, means = sum(n), [s["mean"] for s in slices]
    mean = sum(k * m for k, m in zip(n, means)) / N
    sum_of_squares = sum((k - 1) * (s["stderr"] * math.sqrt(k)) ** 2 + k * (m - mean) ** 2 for k, m, s in zip(n, means, slices))
    return mean, math.sqrt(sum_of_squares / (N - 1) / N)


def user_run(cfg, run_dir: Path) -> None:
    start = time.perf_counter()
    metrics = train(cfg, run_dir)
    wall = time.perf_counter() - start
    t, e = metrics["train"], metrics["test"]
    print(row("suite, as a run", t["seconds"], e["seconds"], wall - t["seconds"] - e["seconds"], e["log_px"]["mean"], e["log_px"]["stderr"]), flush=True)


def interleaved(cfg, preset: str, epochs: int, points: int | None, slice_size: int, device: torch.device) -> None:
    _, _, arch, opt, schedule = PRESETS[preset]
    data = instantiate(cfg.data).to(device)
    pyro.set_rng_seed(cfg.train.seed)
    model, guide = build(cfg, data)
    model, guide = model.to(device), guide.to(device)
    optimizer = instantiate(cfg.optim)(parameters_of(model, guide))
    scheduler, loss = instantiate(cfg.schedule)(optimizer), instantiate(cfg.objective)
    hands = {}  # the hand-written script with each optimizer: its model, training and seconds
    for adam in HAND_OPTIMIZERS:
        hand = HandVAE(**arch).to(device)
        hands[adam] = [hand, HandTraining(hand, data.train, schedule=schedule, dynamic=data.binarize == "dynamic", fused=adam == "fused", **opt), 0.0, 0.0, []]

    progress = None
    for epoch in range(1, epochs + 1):
        progress = fit(model, guide, data, optimizer, epochs=epoch, batch_size=cfg.train.batch_size, progress=False,
                       loss=loss, scheduler=scheduler, start=progress)
        for entry in hands.values():
            entry[2] += entry[1].epoch()

    x = data.test[:points]
    K = cfg.evaluation.num_particles
    model.eval(), guide.eval()
    chunk_size = cfg.evaluation.chunk_size or pairs_within(model, guide, x, cfg.evaluation.memory_budget_mb)  # as the run chooses it
    suite_eval, suite_slices = 0.0, []
    for start in range(0, len(x), slice_size):
        part = x[start : start + slice_size]
        began = time.perf_counter()
        result = evaluate(model, guide, part, num_particles=K, chunk_size=chunk_size, prior_proposal=False)
        suite_eval += time.perf_counter() - began  # evaluate reads its numbers back: no queued work left
        suite_slices.append(result["log_px"])
        for entry in hands.values():
            began = time.perf_counter()
            entry[4].append(iwae_log_px(entry[0].eval(), part, K=K, chunk_size=chunk_size))
            synchronize()
            entry[3] += time.perf_counter() - began
    optim = f"optim.fused={str(bool(cfg.optim.get('fused', False))).lower()}"
    print(row(f"suite ({optim}), interleaved", progress["seconds"], suite_eval, 0, *pooled(suite_slices)), flush=True)
    for adam, (_, _, hand_train, hand_eval, log_px) in hands.items():
        estimate = mean_and_stderr(torch.cat(log_px))
        print(row(f"PyTorch, {adam} Adam, interleaved", hand_train, hand_eval, 0, estimate["mean"], estimate["stderr"]), flush=True)
    print(f"# interleaved, {len(x)} test points in slices of {slice_size}, passes of {chunk_size} pairs")
    for adam, (_, _, hand_train, hand_eval, _) in hands.items():
        print(f"# suite / PyTorch with {adam} Adam: training {progress['seconds'] / hand_train:.2f}, evaluation {suite_eval / hand_eval:.2f}, "
              f"total {(progress['seconds'] + suite_eval) / (hand_train + hand_eval):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="iwae_mnist_1layer", choices=[p for p in PRESETS if PRESETS[p][0] == "mnist"])
    parser.add_argument("--objective", default="trace_elbo", help="the suite's objective= (graph_trace_elbo: recorded)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--particles", type=int, default=5000)
    parser.add_argument("--points", type=int, default=None, help="the first N test points (default: all)")
    parser.add_argument("--slice", type=int, default=500, help="test points per turn of the interleaved evaluation")
    parser.add_argument("--run", action=argparse.BooleanOptionalAction, default=True, help="also time the run as a user starts it")
    parser.add_argument("--data", type=Path, default=os.environ.get("VAE_DATA"), required="VAE_DATA" not in os.environ,
                        help="the folder of the benchmark data sets (default: $VAE_DATA)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    device = benchmark_device(args.device)
    folder = PRESETS[args.preset][0]
    overrides = [
        f"experiment={args.preset}",
        f"objective={args.objective}",
        f"data.root={args.data / folder}",
        f"train.epochs={args.epochs}",
        f"evaluation.num_particles={args.particles}",
        f"evaluation.max_points={args.points or 'null'}",
        "evaluation.splits=[test]",
        "evaluation.prior_proposal=false",
        "evaluation.figures=false",
        "train.progress=false",
        f"train.device={device}",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    print(f"# {args.preset}, objective={args.objective}: {args.epochs} epochs, then K={args.particles} on the test set; {machine(device)}")
    print("| who | train s | eval s | other s | total s | test log p̂(x) ± stderr |")
    print("|---|---:|---:|---:|---:|---:|", flush=True)
    if args.run:
        user_run(cfg, ROOT / "runs" / "bench" / f"end_to_end_{args.preset}_{time.strftime('%Y%m%d-%H%M%S')}")
    interleaved(cfg, args.preset, args.epochs, args.points, args.slice, device)


if __name__ == "__main__":
    main()
