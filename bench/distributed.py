"""One MNIST run on two processes of one thread each against one process of two threads.

    python -m bench.distributed [--data $VAE_DATA] [--epochs 5] [--repeats 3] [--device cuda]

The same run, ``data=mnist train.batch_size=512`` with the default VAE, launched as a user
launches it: ``python -m inference.train train.threads=2`` and ``torchrun --standalone
--nproc_per_node=2 -m inference.train`` (gloo; each rank one torch thread, torchrun's
OMP_NUM_THREADS=1). Each run's seconds per epoch are its SVI loop's (``metrics.json``'s
``train.seconds`` over its epochs: no start-up, no evaluation); the two are launched in turn,
``repeats`` times, and the medians compared.

With ``--device cuda`` (``make bench-gpu``): the plain run on one GPU against the distributed
path on the same GPU, ``torchrun --nproc_per_node=1 ... train.distributed=true`` (a process
group of one, NCCL: what the all-reduce of every step costs).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import machine

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["train.progress=false", "evaluation.max_points=16", "evaluation.num_particles=2", "evaluation.figures=false",
         "evaluation.prior_proposal=false", "train.checkpoint_every=1000"]


def seconds_per_epoch(launch: list[str], overrides: list[str], run_dir: Path, env: dict) -> float:
    done = subprocess.run([*launch, *overrides, f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    train = json.loads((run_dir / "metrics.json").read_text())["train"]
    return train["seconds"] / train["epochs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("VAE_DATA", "data")), help="the folder holding mnist/ (default $VAE_DATA)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    overrides = ["data=mnist", f"data.root={args.data / 'mnist'}", "train.batch_size=512", f"train.epochs={args.epochs}", f"train.device={args.device}", *QUIET]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launches = {
        "1 process x 2 threads": ([sys.executable, "-m", "inference.train", "train.threads=2"], {}),
        "2 processes x 1 thread": ([*torchrun, "--nproc_per_node=2", "-m", "inference.train"], {"OMP_NUM_THREADS": "1"}),
    } if args.device == "cpu" else {
        "1 process": ([sys.executable, "-m", "inference.train"], {}),
        "torchrun, 1 process": ([*torchrun, "--nproc_per_node=1", "-m", "inference.train", "train.distributed=true"], {}),
    }
    times = {name: [] for name in launches}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for name, (launch, env) in launches.items():
                run_dir = Path(folder) / f"{repeat}-{len(times[name])}-{name.split()[0]}"
                times[name].append(seconds_per_epoch(launch, overrides, run_dir, {**os.environ, **env}))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"MNIST, batch 512, {args.epochs} epochs on {args.device}, median of {args.repeats} alternating launches, {machine()}")
    reference = next(iter(medians.values()))
    for name, seconds in medians.items():
        print(f"  {name:24s} {seconds:7.3f} s per epoch   {seconds / reference:5.2f}x   (each: {', '.join(f'{v:.3f}' for v in times[name])})")


if __name__ == "__main__":
    main()
