"""Importance-sampling throughput: the suite's traces-based estimator against hand-written PyTorch.

    python -m bench.estimator [--particles 5000] [--points 20] [--repeats 5]

On the IWAE 1-layer architecture (784-200-200-z50) and MNIST-sized binary data, both compute
log p̂(x) = logsumexp_k log w_k − log K for every point with the same networks and the same
chunking (particle × data-point pairs per pass), and the benchmark prints particle-evaluations
per second and the ratio suite / PyTorch (higher is better for the suite).
"""

import argparse
import math

import pyro
import torch
import torch.nn.functional as F

from inference.estimators import DEFAULT_CHUNK_SIZE, importance_sampling

from .common import ARCHITECTURES, binary_data, interleaved, machine, make_vae

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
            eps = torch.randn(min(particles, K - k), *z_loc.shape)
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
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    args = parser.parse_args()
    pyro.set_rng_seed(0)
    pyro.enable_validation(False)  # as in training runs
    name = "IWAE 1-layer (784-200-200-z50, Tanh)"
    model, guide = make_vae(*ARCHITECTURES[name])
    model.eval(), guide.eval()
    x = binary_data(args.points, 784)
    K, chunk = args.particles, args.chunk_size

    suite = importance_sampling(model, guide, x, K, chunk).log_px
    hand = handwritten_log_px(model, guide, x, K, chunk)
    times = interleaved(
        {
            "suite": lambda: importance_sampling(model, guide, x, K, chunk),
            "PyTorch": lambda: handwritten_log_px(model, guide, x, K, chunk),
        },
        args.repeats,
    )
    evals = K * args.points
    print(f"# importance sampling, {machine()}; {name}, K={K}, {args.points} points, chunk_size={chunk}")
    print(f"# median of {args.repeats} interleaved repeats; mean log p̂(x): suite {suite.mean():.2f}, PyTorch {hand.mean():.2f} (untrained networks)")
    print("| estimator | seconds | particle-evaluations / s | suite / PyTorch |")
    print("|---|---:|---:|---:|")
    for who in ("suite", "PyTorch"):
        print(f"| {who} | {times[who]:.3f} | {evals / times[who]:,.0f} | {times['PyTorch'] / times[who] if who == 'suite' else 1:.2f} |")


if __name__ == "__main__":
    main()
