"""The estimator's peak tensor memory stays under evaluation.memory_budget_mb, whatever K."""

import copy
from functools import partial

import pytest
import torch

from guides import AmortizedNormal
from inference.estimators import importance_sampling
from inference.estimators.memory import PeakTensorMemory, pairs_within
from models import MLP, VAE, Bernoulli, StandardNormal


def test_the_tracker_counts_live_storage_and_its_peak():
    with PeakTensorMemory() as memory:
        a = torch.zeros(1000)  # 4000 bytes
        b = torch.zeros(500)  # 2000 bytes
        del a
        c = torch.zeros(250)  # 1000 bytes: the peak stays at 6000
        view = c.view(25, 10)  # a view allocates nothing
    assert memory.peak == 6000 and memory.live == 3000
    del b, c, view


@pytest.fixture(scope="module")
def mnist_sized():
    torch.manual_seed(0)
    model = VAE(StandardNormal(50), MLP(50, 784, hidden=[200, 200]), Bernoulli()).eval()
    guide = AmortizedNormal(partial(MLP, hidden=[200, 200]), 784, 50).eval()
    return model, guide, torch.bernoulli(torch.full((40, 784), 0.2))


@pytest.mark.slow  # K=5000 on MNIST-sized programs: about 7 s
def test_peak_memory_of_a_large_k_stays_under_a_small_budget(mnist_sized):
    model, guide, x = mnist_sized
    budget_mb = 16
    chunk = pairs_within(model, guide, x, budget_mb)
    with PeakTensorMemory() as bounded:
        estimate = importance_sampling(model, guide, x, num_particles=5000, chunk_size=chunk)
    assert bounded.peak < budget_mb * 2**20
    # what the budget saves: the same estimate in passes of 2^17 pairs takes several times more
    with PeakTensorMemory() as unbounded:
        importance_sampling(model, guide, x[:26], num_particles=5000, chunk_size=2**17)
    assert unbounded.peak > 8 * budget_mb * 2**20
    assert torch.isfinite(estimate.log_px).all()


def test_a_budget_too_small_for_one_sample_is_refused(mnist_sized):
    model, guide, x = mnist_sized
    with pytest.raises(ValueError, match="memory_budget_mb=0.001 is below what one importance sample of one point needs"):
        pairs_within(model, guide, x, 0.001)


@pytest.mark.cuda
def test_on_cuda_the_estimators_peak_device_memory_stays_under_the_budget(mnist_sized):
    """The budget holds on CUDA as on the CPU: the estimator's own peak device memory (the peak
    minus what was allocated before it started) stays under it, where unbounded passes do not."""
    model, guide, x = (copy.deepcopy(t).to("cuda") for t in mnist_sized)
    budget_mb = 16
    chunk = pairs_within(model, guide, x, budget_mb)

    def own_peak(chunk_size: int) -> int:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        estimate = importance_sampling(model, guide, x, num_particles=5000, chunk_size=chunk_size)
        torch.cuda.synchronize()
        assert torch.isfinite(estimate.log_px).all()
        return torch.cuda.max_memory_allocated() - before

    assert own_peak(chunk) < budget_mb * 2**20
    assert own_peak(2**17) > 8 * budget_mb * 2**20
