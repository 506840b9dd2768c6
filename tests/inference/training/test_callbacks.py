"""fit's behaviours beyond the loop as callbacks: called in order at each hook, the defaults
those the documented call gets, a stop and a restore that take effect."""

from functools import partial

import pytest
import torch

from faults import FaultyMLP
from guides import AmortizedNormal
from inference.data import Dataset
from inference.training import Callback, NonFiniteError, TimeLimit, ValidationElbo, fit, parameters_of
from models import MLP, VAE, Bernoulli, StandardNormal


def tiny(decoder=None):
    points = (torch.rand(3, 64, 8) < 0.5).float()
    data = Dataset("coins", *points, image_shape=(8,), levels=2)
    model = VAE(StandardNormal(3), decoder or MLP(3, 8, hidden=[16]), Bernoulli())
    guide = AmortizedNormal(partial(MLP, hidden=[16]), x_dim=8, z_dim=3)
    return model, guide, data, torch.optim.Adam(parameters_of(model, guide), lr=1e-3)


class Recorder(Callback):
    """What each hook saw; stops after ``stop_after`` epochs."""

    def __init__(self, stop_after: int | None = None):
        self.rows, self.saves, self.stop_after = [], [], stop_after

    def epoch_end(self, row, progress):
        self.rows.append(dict(row))

    def stop(self, progress):
        return "enough" if self.stop_after and progress["epoch"] >= self.stop_after else None

    def checkpoint(self, progress, final):
        self.saves.append((progress["epoch"], final))


def test_the_readme_call_gets_the_validation_elbo_and_a_list_replaces_it():
    model, guide, data, optimizer = tiny()
    summary = fit(model, guide, data, optimizer, epochs=2, batch_size=32, progress=False)
    assert all(row["valid_elbo"] is not None for row in summary["curve"])
    model, guide, data, optimizer = tiny()
    summary = fit(model, guide, data, optimizer, epochs=2, batch_size=32, progress=False, callbacks=[])
    assert all(row["valid_elbo"] is None for row in summary["curve"]) and summary["valid_seconds"] == 0


def test_hooks_run_in_order_and_a_stop_ends_the_run_with_a_final_checkpoint():
    model, guide, data, optimizer = tiny()
    before, after = Recorder(), Recorder(stop_after=3)
    summary = fit(model, guide, data, optimizer, epochs=10, batch_size=32, progress=False, callbacks=[before, ValidationElbo(model, guide, data), after])
    assert summary["epochs"] == 3
    assert all(row["valid_elbo"] is None for row in before.rows) and all(row["valid_elbo"] is not None for row in after.rows)
    assert after.saves == [(1, False), (2, False), (3, True)]  # the epoch it stops at is the run's last
    with pytest.raises(ValueError, match="max_seconds=0: expected a positive number"):
        TimeLimit(0)


def test_a_non_finite_step_goes_to_the_first_callback_that_restores():
    class Declines(Callback):
        def non_finite(self, error):
            self.seen = str(error)
            return None  # leaves it to the next

    class Restores(Callback):
        def __init__(self, progress):
            self.progress, self.calls = progress, 0

        def non_finite(self, error):
            self.calls += 1
            return self.progress

    model, guide, data, optimizer = tiny(FaultyMLP(3, 8, hidden=[16], fail_at=3))
    declines = Declines()
    with pytest.raises(NonFiniteError, match="a non-finite value in training at epoch 2, step 3: the loss was nan"):
        fit(model, guide, data, optimizer, epochs=2, batch_size=32, progress=False, callbacks=[declines])
    assert "epoch 2, step 3" in declines.seen  # two steps an epoch
    model, guide, data, optimizer = tiny(FaultyMLP(3, 8, hidden=[16], fail_at=3))
    fresh = fit(model, guide, data, optimizer, epochs=0, batch_size=32, progress=False)  # a progress with nothing done
    restores = Restores(fresh)
    summary = fit(model, guide, data, optimizer, epochs=2, batch_size=32, progress=False, callbacks=[Declines(), restores])
    assert restores.calls >= 1 and summary["epochs"] == len(summary["curve"]) == 2  # restored, it trained on to the end
