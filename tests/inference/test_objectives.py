"""Objective identities: the weighted ELBO against hand-computed traces, IWAE(K=1) against the ELBO."""

import math
from functools import partial

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import RenyiELBO, Trace_ELBO

from guides import AmortizedNormal
from inference.objectives import KLWeighted
from models import MLP, VAE, Bernoulli, StandardNormal


@pytest.fixture
def pair():
    model = VAE(StandardNormal(3), MLP(3, 8, hidden=[16]), Bernoulli())
    guide = AmortizedNormal(partial(MLP, hidden=[16]), x_dim=8, z_dim=3)
    return model, guide, torch.randint(0, 2, (16, 8)).float()


def test_beta_one_without_warmup_is_trace_elbo_exactly(pair):
    model, guide, x = pair
    pyro.set_rng_seed(1)
    weighted = KLWeighted(Trace_ELBO, beta=1.0).differentiable_loss(model, guide, x)
    pyro.set_rng_seed(1)
    assert torch.equal(weighted, Trace_ELBO().differentiable_loss(model, guide, x))


@pytest.mark.parametrize("beta", [0.0, 0.5, 4.0])
def test_beta_weights_the_kl_term_only(pair, beta):
    model, guide, x = pair
    pyro.set_rng_seed(2)
    loss = KLWeighted(Trace_ELBO, beta=beta).differentiable_loss(model, guide, x)
    pyro.set_rng_seed(2)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    log_px_z = model_trace.nodes["x"]["fn"].log_prob(x).sum()
    kl = (guide_trace.nodes["z"]["fn"].log_prob(guide_trace.nodes["z"]["value"]) - model_trace.nodes["z"]["fn"].log_prob(model_trace.nodes["z"]["value"])).sum()
    assert torch.allclose(loss, -(log_px_z - beta * kl), atol=1e-4)


def test_warmup_rises_linearly_to_beta():
    objective = KLWeighted(Trace_ELBO, beta=2.0, warmup_epochs=10)
    weights = []
    for epoch in (0, 5, 10, 30):
        objective.set_epoch(epoch)
        weights.append(objective.weight)
    assert weights == [0.0, 1.0, 2.0, 2.0]


def test_iwae_with_one_particle_is_the_elbo_in_expectation(pair):
    model, guide, x = pair
    renyi, elbo = RenyiELBO(alpha=0, num_particles=1, max_plate_nesting=1), Trace_ELBO()
    a = torch.tensor([renyi.loss(model, guide, x) for _ in range(300)])
    b = torch.tensor([elbo.loss(model, guide, x) for _ in range(300)])
    se = math.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(a.mean() - b.mean()) < 4 * se


def test_iwae_objective_trains_through_loss_and_grads(pair):
    model, guide, x = pair
    objective = KLWeighted(partial(RenyiELBO, alpha=0), num_particles=5)
    assert not hasattr(objective, "differentiable_loss")  # the training step takes the other way
    objective.loss_and_grads(model, guide, x)
    assert all(p.grad is not None for p in guide.parameters())


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="needs beta ≥ 0, warmup_epochs ≥ 0 and num_particles ≥ 1"):
        KLWeighted(Trace_ELBO, beta=-1)
