"""The continuous Bernoulli's log-density: the suite's (in its logits) against torch's.

    python -m bench.likelihood [--repeats 9] [--device cpu|cuda]

The particle filter's batch on the pendulum: 32768 frames of 16x16 logits, 90% of them beyond
|l| = 15 as the trained rotating decoder draws them (a background at −20, a foreground at +8,
and some between), and one frame of data in [0, 1]. Per call: ``likelihood=continuous_bernoulli``'s
``LogitContinuousBernoulli(logits).log_prob(x)`` against torch's
``ContinuousBernoulli(logits).log_prob(x)``; and the largest error of each against torch's in
float64 (exact to rounding at these logits).
"""

import argparse

import torch
from torch.distributions import ContinuousBernoulli

from models.distributions import LogitContinuousBernoulli

from .common import benchmark_device, interleaved, machine


def pendulum_logits(frames: int = 32768, pixels: int = 256, seed: int = 0, device: torch.device = torch.device("cpu")) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    which = torch.rand(frames, pixels, generator=g)
    logits = torch.where(which < 0.8, -20.0, torch.where(which < 0.9, 8.0, 0.0)) + torch.randn(frames, pixels, generator=g) * 2
    return logits.to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = benchmark_device(args.device)
    logits = pendulum_logits(device=device)
    x = torch.rand(logits.shape[-1], generator=torch.Generator().manual_seed(1)).to(device)
    ours, torchs = LogitContinuousBernoulli(logits=logits, validate_args=False), ContinuousBernoulli(logits=logits, validate_args=False)
    exact = ContinuousBernoulli(logits=logits.double(), validate_args=False).log_prob(x.double())
    with torch.no_grad():
        times = interleaved({"suite": lambda: ours.log_prob(x), "torch": lambda: torchs.log_prob(x)}, args.repeats)
        errors = {name: (d.log_prob(x).double() - exact).abs().max().item() for name, d in (("suite", ours), ("torch", torchs))}
    print(f"continuous Bernoulli log-density of {tuple(logits.shape)} logits, {machine(device)}")
    for name in ("suite", "torch"):
        print(f"  {name:5s} {times[name] * 1e3:8.1f} ms   largest error against float64 {errors[name]:.1e} nats")
    print(f"  suite / torch: {times['suite'] / times['torch']:.2f}")


if __name__ == "__main__":
    main()
