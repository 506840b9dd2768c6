"""The linear-Gaussian closed forms against numerical integration over z."""

import math

import pytest
import torch
from torch import nn

from models import MLP, Bernoulli, Gaussian, LinearGaussian, StandardNormal


def grid_posterior(model: LinearGaussian, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x, z) on a grid of 1-D z, for each x: a ``(len(x), len(z))``-shaped tensor."""
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z)  # (G,)
    x_loc = model.decoder(z[:, None])  # (G, x_dim)
    log_px_z = torch.distributions.Normal(x_loc, model.likelihood.x_scale).log_prob(x[:, None]).sum(-1)
    return log_pz + log_px_z


def test_exact_log_px_and_posterior_match_quadrature():
    model = LinearGaussian.from_params(W=torch.tensor([[1.5], [-0.7]]), b=torch.tensor([0.3, -1.0]), x_scale=0.4)
    model.double()
    x = torch.tensor([[0.0, 0.0], [2.0, -2.0], [-1.0, 1.0]], dtype=torch.float64)
    z = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    log_joint = grid_posterior(model, x, z)
    dz = (z[1] - z[0]).item()
    log_px = torch.logsumexp(log_joint, -1) + math.log(dz)
    assert torch.allclose(model.exact_log_px(x), log_px, atol=1e-6)

    posterior = torch.softmax(log_joint, -1)
    z_mean = (posterior * z).sum(-1)
    z_var = (posterior * (z - z_mean[:, None]) ** 2).sum(-1)
    exact = model.exact_posterior(x)
    assert torch.allclose(exact.mean[:, 0], z_mean, atol=1e-6)
    assert torch.allclose(exact.covariance_matrix[:, 0, 0], z_var, atol=1e-6)


@pytest.mark.parametrize(
    "parts, wrong",
    [
        ((StandardNormal(2), MLP(2, 3, hidden=[4]), Gaussian()), "decoder"),
        ((StandardNormal(2), nn.Linear(2, 3), Bernoulli()), "likelihood"),
    ],
)
def test_parts_without_a_closed_form_are_refused(parts, wrong):
    with pytest.raises(ValueError, match=f"LinearGaussian needs a .* {wrong} for its closed form"):
        LinearGaussian(*parts)
