"""The training step: what it optimizes, and the compiled objective against the plain one."""

from functools import partial

import pyro
import pytest
import torch
from pyro.infer import JitTrace_ELBO, Trace_ELBO

from faults import FaultyMLP
from guides import AmortizedNormal
from inference.training import ElboStep, NonFiniteError, parameters_of
from models import MLP, VAE, Bernoulli, StandardNormal


def tiny_pair():
    model = VAE(StandardNormal(3), MLP(3, 8, hidden=[16]), Bernoulli())
    guide = AmortizedNormal(partial(MLP, hidden=[16]), x_dim=8, z_dim=3)
    return model, guide


def test_parameters_are_collected_once_even_when_shared():
    model, guide = tiny_pair()
    model.shared = guide.encoder  # e.g. a VampPrior reusing the encoder
    params = parameters_of(model, guide)
    every = [*model.parameters(), *guide.parameters()]
    assert len(params) == len({id(p) for p in every}) < len(every)


def test_step_returns_the_negative_elbo_it_descends():
    model, guide = tiny_pair()
    x = torch.randint(0, 2, (32, 8)).float()
    step = ElboStep(model, guide, torch.optim.SGD(parameters_of(model, guide), lr=0.0))
    pyro.set_rng_seed(5)
    loss = step(x)
    pyro.set_rng_seed(5)
    assert torch.allclose(loss, Trace_ELBO().differentiable_loss(model, guide, x))
    assert not loss.requires_grad


@pytest.mark.filterwarnings("ignore:Encountered NaN")  # Pyro says so before the guard does
@pytest.mark.parametrize("fault", ["loss", "grad"])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_a_deferred_check_leaves_the_state_of_the_step_before_the_bad_one_and_names_it(fault, device):
    """Five steps, the 3rd and 4th bad: the deferred check lets all five run, reads the flag once,
    and then the parameters and the optimizer's state are exactly those the per-step check
    leaves when it stops at the 3rd, and its message names the same loss and parameters."""
    x = torch.randint(0, 2, (32, 8)).float().to(device)
    outcomes = []
    for deferred in (False, True):
        pyro.set_rng_seed(0)
        model = VAE(StandardNormal(3), FaultyMLP(3, 8, hidden=[16], fail_at=3, fault=fault), Bernoulli()).to(device)
        guide = AmortizedNormal(partial(MLP, hidden=[16]), x_dim=8, z_dim=3).to(device)
        optimizer = torch.optim.Adam(parameters_of(model, guide), lr=1e-2, fused=True)
        step = ElboStep(model, guide, optimizer, deferred=deferred)
        with pytest.raises(NonFiniteError) as error:
            for _ in range(5):
                step(x)
            step.check()
        state = {k: v.clone() for k, v in [*model.state_dict().items(), *guide.state_dict().items()]}
        outcomes.append((error.value, state, optimizer.state_dict()["state"]))
    (immediate, before, optimized), (deferred, after, optimized_deferred) = outcomes
    assert immediate.later_steps is None and deferred.later_steps == 2
    assert str(deferred) == str(immediate).split("; non-finite log-probabilities")[0]  # the re-run of the batch may not meet the fault again
    assert ("the loss was nan" if fault == "loss" else "the loss was finite; non-finite gradients of model.decoder.0.weight") in str(deferred)
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    for key, value in optimized.items():
        assert all(torch.equal(value[name], optimized_deferred[key][name]) for name in value)
    assert optimized[0]["step"] == 2  # the two good steps


def test_a_deferred_check_needs_an_optimizer_that_can_skip_on_the_device():
    model, guide = tiny_pair()
    with pytest.raises(ValueError, match=r"Adam is not \(set optim.fused=true"):
        ElboStep(model, guide, torch.optim.Adam(parameters_of(model, guide)), deferred=True)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated")
def test_jit_objective_computes_the_same_loss_on_full_and_partial_batches():
    model, guide = tiny_pair()
    x = torch.randint(0, 2, (32, 8)).float()
    jit = JitTrace_ELBO(ignore_jit_warnings=True)
    with pyro.validation_enabled(False):
        jit.differentiable_loss(model, guide, x)  # compiles
        for batch in (x, x[:17]):  # the last batch of an epoch is smaller
            pyro.set_rng_seed(3)
            compiled = jit.differentiable_loss(model, guide, batch)
            pyro.set_rng_seed(3)
            plain = Trace_ELBO().differentiable_loss(model, guide, batch)
            assert torch.allclose(compiled, plain, rtol=1e-5)


def test_an_epoch_is_one_permutation_of_the_training_points_by_default():
    from inference.data import digits
    from inference.training.loop import epoch_batches, steps_per_epoch

    data = digits(num_labeled=50)  # labels kept but labeled_per_batch=0: batches ignore them
    batches = epoch_batches(data, 100)
    assert len(batches) == steps_per_epoch(data, 100) == -(-data.train.shape[0] // 100)
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(data.train.shape[0]))


def mnist_sized(num_labeled: int):
    """50,000 training points of ten classes, as MNIST's training split, with ``num_labeled`` kept
    and ``data.labeled_per_batch=auto``."""
    from inference.data import Dataset
    from inference.data.dataset import with_labels_kept

    points = {split: torch.zeros(n, 1) for split, n in [("train", 50000), ("valid", 10), ("test", 10)]}
    labels = {split: torch.arange(len(x)) % 10 for split, x in points.items()}
    return with_labels_kept(Dataset("toy", **points, image_shape=(1,), labels=labels), num_labeled, seed=0, labeled_per_batch="auto")


@pytest.mark.parametrize("num_labeled, per_batch", [(100, 1), (600, 6), (1000, 10), (3000, 30)])
def test_auto_shows_each_labelled_point_once_an_epoch(num_labeled, per_batch):
    """data.labeled_per_batch=auto at MNIST's 50,000 training points in batches of 500
    (experiment=ss_mnist_stacked): each labelled point comes once an epoch, as each unlabelled
    one does, so the classification term keeps the weight the objective gives it per epoch."""
    from inference.training.loop import epoch_batches, labelled_per_batch, steps_per_epoch

    data = mnist_sized(num_labeled)
    mask = data.batch_extra("train", ("mask",))["mask"]
    batches = epoch_batches(data, 500)
    assert labelled_per_batch(data, 500) == per_batch and len(batches) == steps_per_epoch(data, 500)
    assert torch.equal(torch.bincount(torch.cat(batches), minlength=50000), torch.ones(50000, dtype=torch.long))  # every point once
    assert all(int(mask[b].sum()) == per_batch for b in batches)


def test_auto_refuses_a_batch_with_no_room_for_unlabelled_points():
    from inference.training.loop import steps_per_epoch

    with pytest.raises(ValueError, match=r"data.labeled_per_batch=2 must be fewer than the batch size 2"):
        steps_per_epoch(mnist_sized(45000), 2)  # 9 in 10 labelled: 2 of a batch of 2


def test_with_labeled_per_batch_every_batch_holds_that_many_labelled_points_cycling_through_them():
    """One pass over the unlabelled points; k labelled points in every batch, the labelled set
    gone through in full cycles, so that no labelled point is seen more than once more than another."""
    from inference.data import digits
    from inference.training.loop import epoch_batches, steps_per_epoch

    data = digits(num_labeled=50, labeled_per_batch=10)
    mask = data.batch_extra("train", ("mask",))["mask"]
    batches = epoch_batches(data, 100)
    assert len(batches) == steps_per_epoch(data, 100) == -(-int((~mask).sum()) // 90)
    assert all(int(mask[b].sum()) == 10 for b in batches)
    assert all(len(b) == 100 for b in batches[:-1])
    unlabelled = torch.cat([b[~mask[b]] for b in batches])
    assert torch.equal(unlabelled.sort().values, torch.nonzero(~mask).squeeze(1))  # each once
    counts = torch.bincount(torch.cat([b[mask[b]] for b in batches]), minlength=len(mask))[mask]
    seen = len(batches) * 10
    assert counts.sum() == seen and counts.min() >= seen // 50 and counts.max() <= -(-seen // 50)
    with pytest.raises(ValueError, match=r"data.labeled_per_batch=10 must be fewer than the batch size 10"):
        steps_per_epoch(data, 10)  # fit from Python: refused before the first step, not by a failed split
    again = epoch_batches(data, 100)
    assert not all(torch.equal(a, b) for a, b in zip(batches, again))  # reshuffled every epoch



@pytest.mark.slow  # a fresh interpreter: about 5 s
def test_flushing_subnormals_first_thing_reaches_every_worker_thread():
    """What the entry points rely on: set before torch's worker threads start, the mode holds in
    all of them (a product computed across threads comes out all zeros); set after, it would not
    reach them. In a fresh process, as ``python -m inference.train`` is."""
    import subprocess
    import sys

    script = (
        "import torch; torch.set_num_threads(2); from inference.training import flush_subnormals; "
        "supported = flush_subnormals(); x = torch.full((1 << 22,), 1e-39); "
        "print(supported, bool(((x * 1.0) == 0).all()))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    if out[0] != "True":
        pytest.skip("this CPU cannot flush subnormals to zero")
    assert out == ["True", "True"]
