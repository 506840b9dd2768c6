"""The VAE program: its sites, plate and shapes; samples with the data's shape and support."""

import pyro
import pytest
import torch
from pyro import poutine

from models import MLP, VAE, Bernoulli, StandardNormal


def tiny_vae() -> VAE:
    return VAE(StandardNormal(3), MLP(3, 6, hidden=[8]), Bernoulli())


def test_model_samples_z_and_observes_x_under_the_data_plate():
    x = torch.randint(0, 2, (4, 6)).float()
    trace = poutine.trace(tiny_vae()).get_trace(x)
    assert trace.nodes["z"]["value"].shape == (4, 3)
    assert trace.nodes["x"]["is_observed"] and trace.nodes["x"]["value"] is x
    for site in ("z", "x"):
        assert [f.name for f in trace.nodes[site]["cond_indep_stack"]] == ["data"]
    params = pyro.get_param_store().keys()
    assert "model$$$decoder.0.weight" in params  # registered with pyro.module


def test_samples_have_the_data_shape_and_support():
    x = tiny_vae().sample(50)
    assert x.shape == (50, 6)
    assert ((x == 0) | (x == 1)).all()


def test_mlp_rejects_unknown_activation_and_bad_widths():
    with pytest.raises(ValueError, match="activation 'Relu' is not a torch.nn module"):
        MLP(3, 4, activation="Relu")
    with pytest.raises(ValueError, match="positive integers"):
        MLP(3, 4, hidden=[0])
