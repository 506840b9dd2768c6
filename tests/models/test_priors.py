"""Each prior's density against an independent computation."""

import math
from functools import partial

import pytest
import torch

from guides import AmortizedNormal
from models import MLP, FlowPrior, LearnedNormal, MixturePrior, StandardNormal, VampPrior


def normal_log_density(z, loc, scale):
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


@pytest.mark.parametrize("prior", [StandardNormal(3), LearnedNormal(3), MixturePrior(3, 4), FlowPrior(3, 2)], ids=lambda p: type(p).__name__)
def test_shapes_and_sampling(prior):
    d = prior(5)
    assert d.batch_shape == (5,) and d.event_shape == (3,)
    z = d.sample()
    assert z.shape == (5, 3) and torch.isfinite(d.log_prob(z)).all()


def test_mixture_log_prob_is_the_direct_sum():
    prior = MixturePrior(z_dim=3, components=4)
    with torch.no_grad():
        prior.logits.copy_(torch.randn(4))
        prior.z_log_scales.copy_(0.3 * torch.randn(4, 3))
    z = torch.randn(6, 3)
    weights = torch.softmax(prior.logits, 0)
    direct = sum(
        weights[k] * normal_log_density(z, prior.z_locs[k], prior.z_log_scales[k].exp()).exp() for k in range(4)
    ).log()
    assert torch.allclose(prior(6).log_prob(z), direct, atol=1e-5)


def test_vamp_prior_is_the_average_of_posteriors_at_the_pseudo_inputs():
    guide = AmortizedNormal(partial(MLP, hidden=[8]), x_dim=5, z_dim=2)
    prior = VampPrior(guide, x_dim=5, components=3)
    z = torch.randn(4, 2)
    z_loc, z_scale = guide.posterior_params(prior.pseudo_inputs)  # (3, 2)
    average = sum(normal_log_density(z, z_loc[k], z_scale[k]).exp() for k in range(3)) / 3
    assert torch.allclose(prior(4).log_prob(z), average.log(), atol=1e-5)
    # the encoder belongs to the guide alone: the prior adds only its pseudo-inputs
    assert [name for name, _ in prior.named_parameters()] == ["pseudo_inputs"]


def test_vamp_prior_needs_a_guide_with_a_posterior():
    with pytest.raises(ValueError, match="VampPrior needs a guide with diagonal Gaussian posteriors"):
        VampPrior(torch.nn.Linear(2, 2), x_dim=2)


def test_flow_prior_log_prob_is_the_change_of_variables():
    torch.manual_seed(1)
    prior = FlowPrior(z_dim=3, layers=2, hidden=[16]).double()  # float64: the spline inverse is exact to ~1e-12
    for coupling in prior.couplings:  # move the splines away from the identity they start at
        for p in coupling.parameters():
            p.data.normal_(0, 0.5)

    def f(u):  # u -> z through every transform
        for t in prior.transforms:
            u = t(u)
        return u

    u = torch.randn(4, 3, dtype=torch.float64)
    z = f(u).detach()
    for i in range(4):
        # log p(z) = log N(u; 0, I) − log |det ∂f/∂u|, with the Jacobian from autograd
        jacobian = torch.autograd.functional.jacobian(f, u[i : i + 1]).reshape(3, 3)
        expected = normal_log_density(u[i], torch.zeros(3), torch.ones(3)) - torch.linalg.slogdet(jacobian).logabsdet
        assert torch.allclose(prior(1).log_prob(z[i : i + 1]), expected, atol=1e-8)


@pytest.mark.parametrize("make, message", [
    (lambda: FlowPrior(1), "FlowPrior: z_dim must be an integer of at least 2, got 1"),
    (lambda: MixturePrior(3, 0), "components must be a positive integer, got 0"),
    (lambda: StandardNormal(0), "z_dim must be an integer of at least 1, got 0"),
])
def test_bad_sizes_are_refused(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()
