"""Shared pieces of the benchmarks: the two architectures, timing, and a table printer.

Every benchmark times the suite and a hand-written PyTorch version of the same computation in
one process, on the same data and networks, interleaved, and prints ratios of medians: absolute
times on shared machines are noise, ratios are not.
"""

import platform
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from guides import AmortizedNormal
from models import MLP, VAE, Bernoulli, StandardNormal

# name -> (x_dim, hidden widths, z_dim, activation)
ARCHITECTURES = {
    "digits default (64-200-200-z10, ReLU)": (64, [200, 200], 10, "ReLU"),
    "IWAE 1-layer (784-200-200-z50, Tanh)": (784, [200, 200], 50, "Tanh"),
}


def make_vae(x_dim: int, hidden: list[int], z_dim: int, activation: str) -> tuple[VAE, AmortizedNormal]:
    model = VAE(StandardNormal(z_dim), MLP(z_dim, x_dim, hidden, activation), Bernoulli())
    guide = AmortizedNormal(partial(MLP, hidden=hidden, activation=activation), x_dim, z_dim)
    return model, guide


def binary_data(n: int, x_dim: int, seed: int = 0) -> torch.Tensor:
    """Binary data with MNIST-like sparsity (about 13% ones); the timings do not depend on content."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, x_dim, generator=g) < 0.13).float()


def synchronize() -> None:
    """Wait for the GPU's queued work (CUDA runs asynchronously: a timer must wait for it); nothing on the CPU."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def interleaved(fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, run in turn so that machine noise hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize()
            start = time.perf_counter()
            fn()
            synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def benchmark_device(name: str) -> torch.device:
    """``--device``: cpu, or cuda (refused with the reason where there is none)."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: torch {torch.__version__} sees no CUDA device here")
    return torch.device(name)


def machine(device: torch.device = torch.device("cpu")) -> str:
    host = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    return f"{torch.cuda.get_device_name(device)}, {host}" if device.type == "cuda" else host
