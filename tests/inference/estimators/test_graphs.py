"""A seeded estimate's groups replayed as CUDA graphs (:mod:`inference.estimators.graphs`): the
numbers of the eager estimate, the global RNG left as it was, a program that cannot be
captured run eagerly with the same numbers, and the memory budget kept."""

import copy
import logging
import re

import pytest
import torch

from test_importance import small_hierarchical, small_vae
from test_memory import mnist_sized  # noqa: F401 (a fixture)

from inference.estimators import importance_sampling
from inference.estimators.importance import seed_group_size
from inference.estimators.memory import pairs_within

K = 2**12  # seed groups of 4 points: of 14 points, the first group eager, the second captured, then replays
assert seed_group_size(K) == 4


def test_a_seeded_estimate_leaves_the_global_rng_as_it_was():
    model, guide = small_vae()
    x = torch.bernoulli(torch.full((9, 64), 0.3))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    importance_sampling(model, guide, x, num_particles=K, seed=1)
    assert torch.equal(torch.rand(3), expected)


def replays(monkeypatch) -> list:
    """Count the replays of every CUDA graph from now on."""
    calls, replay = [], torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda self: (calls.append(1), replay(self))[1])
    return calls


@pytest.mark.cuda
@pytest.mark.parametrize("make", [small_vae, small_hierarchical], ids=["vae", "hierarchical"])
def test_on_cuda_replayed_groups_give_the_numbers_of_the_eager_estimate(make, monkeypatch):
    model, guide = (program.cuda().eval() for program in make())
    x = torch.bernoulli(torch.full((14, 64), 0.3)).cuda()
    eager = importance_sampling(model, guide, x, num_particles=K, chunk_size=5000, seed=3)
    calls = replays(monkeypatch)
    before = torch.cuda.get_rng_state()
    captured = importance_sampling(model, guide, x, num_particles=K, chunk_size=5000, seed=3, cuda_graphs=True)
    assert len(calls) == 2  # groups 2 and 3; group 1 warmed up, group 4 (2 points) ran once, eagerly
    assert torch.equal(torch.cuda.get_rng_state(), before)
    assert torch.allclose(captured.log_px, eager.log_px, atol=1e-5) and torch.allclose(captured.elbo, eager.elbo, atol=1e-5)
    other = importance_sampling(model, guide, x, num_particles=K, chunk_size=5000, seed=4, cuda_graphs=True)
    assert not torch.allclose(other.log_px, eager.log_px)


class ReadsBack(torch.nn.Module):
    """The small VAE's model, reading a value back every call: no capture can hold that."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        self.seen = x.sum().item()
        return self.model(x)


@pytest.mark.cuda
def test_on_cuda_a_program_that_cannot_be_captured_is_run_eagerly_with_the_same_numbers(caplog, monkeypatch):
    model, guide = small_vae()
    model, guide = ReadsBack(model).cuda().eval(), guide.cuda().eval()
    x = torch.bernoulli(torch.full((14, 64), 0.3)).cuda()
    eager = importance_sampling(model, guide, x, num_particles=K, seed=3)
    calls = replays(monkeypatch)
    with caplog.at_level(logging.INFO, logger="inference.estimators.graphs"):
        fallback = importance_sampling(model, guide, x, num_particles=K, seed=3, cuda_graphs=True)
    assert not calls and "the estimator runs without CUDA graphs: the programs cannot be captured" in caplog.text
    assert torch.allclose(fallback.log_px, eager.log_px, atol=1e-5)
    again = importance_sampling(model, guide, x, num_particles=K, seed=3)  # CUDA still works after
    assert torch.allclose(again.log_px, eager.log_px, atol=1e-5)


@pytest.mark.cuda
def test_on_cuda_a_seeded_captured_estimate_keeps_the_memory_budget(mnist_sized):  # noqa: F811
    """The budget sizes the model's passes (to 3/4 of it); the guide's draws for a seed group
    (2^14 pairs of 50 latents, a few MB) come on top of them, inside a budget of 128 MB."""
    model, guide, x = (copy.deepcopy(t).to("cuda") for t in mnist_sized)
    budget_mb = 128
    chunk = pairs_within(model, guide, x, budget_mb)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    estimate = importance_sampling(model, guide, x, num_particles=5000, chunk_size=chunk, seed=0, cuda_graphs=True)
    torch.cuda.synchronize()
    assert torch.isfinite(estimate.log_px).all()
    assert torch.cuda.max_memory_allocated() - before < budget_mb * 2**20


class _Capture:
    """``torch.cuda.graph`` on a machine without CUDA: the block runs as it is."""

    def __init__(self, graph):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize(
    "error, falls_back",
    [
        (RuntimeError("CUDA error: operation not permitted when stream is capturing"), True),
        (RuntimeError("CUDA error: operation failed due to a previous error during capture (cudaErrorStreamCaptureInvalidated)"), True),
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), False),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 5x2)"), False),
    ],
    ids=["capture-refused", "capture-invalidated", "out-of-memory", "a-bug"],
)
def test_only_an_error_of_capture_falls_back_to_eager(monkeypatch, caplog, error, falls_back):
    """Capture fails in the programs: a refusal of capture runs them eagerly, with one log line;
    out of memory (a RuntimeError too) or a bug reaches the user with its own message."""
    from inference.estimators.graphs import SeededGroups

    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: object())
    monkeypatch.setattr(torch.cuda, "graph", _Capture)

    def fn(x, extra):
        raise error

    groups = SeededGroups(fn, cuda_graphs=True)
    with caplog.at_level(logging.INFO):
        if falls_back:
            assert groups._capture({}, torch.zeros(2, 3), {}) is False
        else:
            with pytest.raises(type(error), match=re.escape(str(error))):
                groups._capture({}, torch.zeros(2, 3), {})
    assert groups.cuda_graphs is not falls_back
    assert ("the programs cannot be captured" in caplog.text) is falls_back
