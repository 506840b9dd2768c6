"""The paper presets on a CPU budget, beside a hand-written PyTorch version and the paper.

    python -m bench.presets [--preset iwae_mnist_1layer ...] [--seconds 600] [--points 1000]

For each preset: the suite trains for as many epochs as fit in ``--seconds`` of SVI loop
(``train.max_seconds``), then estimates log p(x) with K=5000 on the first ``--points`` test
points; the hand-written version (bench/handwritten_vae.py) does the same with the same
architecture, learning rate, schedule, data and budget, in the same process, twice: with plain
Adam (``PyTorch``, what a researcher writes) and with fused Adam (``PyTorch-fused``, the
suite's default ``optim.fused=true``). The Adagrad preset (frey_gaussian) has the plain one
only. Needs the benchmark data in --data DIR (or $VAE_DATA).
"""

import argparse
import os
import math
import time
from pathlib import Path

import pyro
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from inference.training.schedules import iwae_factor
from inference.train import train

from .handwritten_vae import HandVAE, iwae_log_px, train_budgeted

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {
    # preset: (data folder, published test log p(x) or "none", hand-written model, optimizer, schedule)
    "iwae_mnist_1layer": ("mnist", -86.76, dict(), dict(lr=1e-3, eps=1e-4, batch_size=20), iwae_factor),
    "iwae_mnist_2layer": ("mnist", -85.33, dict(z1_dim=100), dict(lr=1e-3, eps=1e-4, batch_size=20), iwae_factor),
    "vampprior_mnist": (
        "binarized_mnist",
        -85.57,
        dict(hidden=(300, 300), z_dim=40, activation=torch.nn.ReLU, pseudo_inputs=500),
        dict(lr=5e-4, eps=1e-8, batch_size=100),
        None,
    ),
    "frey_gaussian": (
        "frey_face",
        "none",
        dict(x_dim=560, hidden=(200,), z_dim=10, gaussian_floor=1e-2),
        dict(lr=2e-2, batch_size=100, optimizer="adagrad"),
        None,
    ),
}


def row(preset, who, epochs, train_s, eval_s, mean, stderr, published):
    return f"| {preset} | {who} | {epochs} | {train_s:.0f} | {eval_s:.0f} | {mean:.2f} ± {stderr:.2f} | {published} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", nargs="*", default=list(PRESETS))
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=os.environ.get("VAE_DATA"), required="VAE_DATA" not in os.environ,
                        help="the folder of the benchmark data sets (default: $VAE_DATA)")
    parser.add_argument("--who", nargs="*", default=["suite", "PyTorch", "PyTorch-fused"], choices=["suite", "PyTorch", "PyTorch-fused"])
    args = parser.parse_args()
    print(f"# {args.seconds:.0f} s of training, then K=5000 on the first {args.points} test points; {torch.get_num_threads()} torch threads")
    print("| preset | who | epochs | train s | eval s | test log p̂(x) ± stderr | published |")
    print("|---|---|---:|---:|---:|---:|---:|", flush=True)
    for preset in args.preset:
        folder, published, arch, opt, schedule = PRESETS[preset]
        overrides = [
            f"experiment={preset}",
            f"data.root={args.data / folder}",
            f"train.max_seconds={args.seconds}",
            "train.epochs=1000000",  # the budget, not the preset's epoch count, ends training
            f"evaluation.max_points={args.points}",
            "evaluation.splits=[test]",
            "train.progress=false",
            "train.device=cpu",
        ]
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        if "suite" in args.who:
            metrics = train(cfg, ROOT / "runs" / "bench" / preset)
            t, e = metrics["train"], metrics["test"]
            print(row(preset, "suite", t["epochs"], t["seconds"], e["seconds"], e["log_px"]["mean"], e["log_px"]["stderr"], published), flush=True)
        for who in ("PyTorch", "PyTorch-fused"):
            fused = who == "PyTorch-fused"
            if who not in args.who or (fused and opt.get("optimizer") == "adagrad"):
                continue
            pyro.set_rng_seed(0)
            data = instantiate(cfg.data)
            model = HandVAE(**arch)
            epochs, seconds = train_budgeted(
                model, data.train, max_seconds=args.seconds, schedule=schedule, dynamic=data.binarize == "dynamic", fused=fused, **opt
            )
            start = time.perf_counter()
            log_px = iwae_log_px(model.eval(), data.test[: args.points])
            stderr = log_px.std().item() / math.sqrt(len(log_px))
            print(row(preset, f"{who} ({'fused' if fused else 'plain'} Adam)" if opt.get("optimizer") != "adagrad" else f"{who} (Adagrad)",
                      epochs, seconds, time.perf_counter() - start, log_px.mean().item(), stderr, published), flush=True)


if __name__ == "__main__":
    main()
