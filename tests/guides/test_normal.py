"""The amortized Normal guide mirrors the model and keeps its scale above the floor."""

from functools import partial

import pytest
import torch
from pyro import poutine

from guides import AmortizedNormal
from models import MLP


def test_guide_samples_z_under_the_data_plate():
    guide = AmortizedNormal(partial(MLP, hidden=[8]), x_dim=6, z_dim=3)
    trace = poutine.trace(guide).get_trace(torch.zeros(4, 6))
    assert trace.nodes["z"]["value"].shape == (4, 3)
    assert [f.name for f in trace.nodes["z"]["cond_indep_stack"]] == ["data"]
    assert trace.nodes["z"]["fn"].event_shape == (3,)


def test_scale_never_falls_below_the_floor():
    guide = AmortizedNormal(partial(MLP, hidden=[]), x_dim=2, z_dim=1, scale_floor=1e-3)
    with torch.no_grad():
        guide.encoder[0].weight.zero_()
        guide.encoder[0].bias.fill_(-1e4)  # raw scale → −∞
    z_loc, z_scale = guide.posterior_params(torch.zeros(3, 2))
    assert torch.all(z_scale >= 1e-3) and torch.isfinite(z_scale).all()


def test_guide_rejects_nonpositive_z_dim():
    with pytest.raises(ValueError, match="z_dim must be a positive integer, got 0"):
        AmortizedNormal(MLP, x_dim=2, z_dim=0)
