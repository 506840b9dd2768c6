"""Importance-sampling throughput: the suite's traces-based estimator against hand-written PyTorch.

    python -m bench.estimator [--particles 5000] [--points 20] [--repeats 5] [--memory-budget-mb 512 | --chunk-size N] [--device cpu|cuda]

On the IWAE 1-layer architecture (784-200-200-z50) and MNIST-sized binary data, both compute
log p̂(x) = logsumexp_k log w_k − log K for every point with the same networks and the same
chunking (particle × data-point pairs per pass: what ``evaluation.memory_budget_mb`` gives in a
run, or ``--chunk-size``), and the benchmark prints particle-evaluations per second and the
ratio suite / PyTorch (higher is better for the suite). The suite runs as a run does, each seed
group's proposals from a seed of its own (``suite``; on CUDA also with its groups replayed as
CUDA graphs, ``suite, captured``), and with one stream of random numbers for all points
(``suite, unseeded``). It also prints the peak tensor memory of one suite estimate.
"""

import argparse
import math

import pyro
import torch
import torch.nn.functional as F

from inference.estimators import importance_sampling
from inference.estimators.memory import PeakTensorMemory, pairs_within

from .common import ARCHITECTURES, benchmark_device, binary_data, interleaved, machine, make_vae

LOG_2PI = math.log(2 * math.pi)


@torch.no_grad()
def handwritten_log_px(model, guide, x: torch.Tensor, K: int, chunk_size: int) -> torch.Tensor:
    """The IWAE estimate written directly: (K, b) log weights per block of b points."""
    block = max(1, min(x.shape[0], chunk_size // K))
    particles = max(1, min(K, chunk_size // block))
    out = []
    for start in range(0, x.shape[0], block):
        xb = x[start : start + block]
        z_loc, z_scale = guide.posterior_params(xb)  # (b, z_dim)
        log_w = []
        for k in range(0, K, particles):
            eps = torch.randn(min(particles, K - k), *z_loc.shape, device=z_loc.device)
            z = z_loc + z_scale * eps  # (k, b, z_dim)
            x_logits = model.decoder(z)  # (k, b, 784)
            log_px_z = (xb * x_logits - F.softplus(x_logits)).sum(-1)
            log_pz = -0.5 * (z**2 + LOG_2PI).sum(-1)
            log_qz = (-0.5 * eps**2 - z_scale.log() - 0.5 * LOG_2PI).sum(-1)
            log_w.append(log_px_z + log_pz - log_qz)
        out.append(torch.logsumexp(torch.cat(log_w), 0) - math.log(K))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--particles", type=int, default=5000)
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-budget-mb", type=float, default=512, help="size the passes as a run with this budget does")
    parser.add_argument("--chunk-size", type=int, help="or: this many particle × point pairs per pass")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    device = benchmark_device(args.device)
    pyro.set_rng_seed(0)
    pyro.enable_validation(False)  # as in training runs
    name = "IWAE 1-layer (784-200-200-z50, Tanh)"
    model, guide = make_vae(*ARCHITECTURES[name])
    model, guide = model.to(device).eval(), guide.to(device).eval()
    x = binary_data(args.points, 784).to(device)
    K = args.particles
    chunk = args.chunk_size or pairs_within(model, guide, x, args.memory_budget_mb)

    with PeakTensorMemory() as memory:
        suite = importance_sampling(model, guide, x, K, chunk, seed=0).log_px
    hand = handwritten_log_px(model, guide, x, K, chunk)
    estimators = {"suite": lambda: importance_sampling(model, guide, x, K, chunk, seed=0)}
    if device.type == "cuda":  # the suite's seeded groups replayed as CUDA graphs (opt-in until measured)
        estimators["suite, captured"] = lambda: importance_sampling(model, guide, x, K, chunk, seed=0, cuda_graphs=True)
    estimators["suite, unseeded"] = lambda: importance_sampling(model, guide, x, K, chunk)
    estimators["PyTorch"] = lambda: handwritten_log_px(model, guide, x, K, chunk)
    times = interleaved(estimators, args.repeats)
    evals = K * args.points
    budget = "" if args.chunk_size else f" (from memory_budget_mb={args.memory_budget_mb:g})"
    print(f"# importance sampling, {machine(device)}; {name}, K={K}, {args.points} points, chunk_size={chunk}{budget}")
    print(f"# median of {args.repeats} interleaved repeats; mean log p̂(x): suite {suite.mean():.2f}, PyTorch {hand.mean():.2f} (untrained networks)")
    print(f"# peak tensor memory of one suite estimate: {memory.peak / 2**20:.0f} MB")
    print("| estimator | seconds | particle-evaluations / s | suite / PyTorch |")
    print("|---|---:|---:|---:|")
    for who, t in times.items():
        print(f"| {who} | {t:.3f} | {evals / t:,.0f} | {times['PyTorch'] / t:.2f} |")


if __name__ == "__main__":
    main()
