"""The VAE model program: p(x, z) = p(z) p(x|z), one data plate, sites ``"z"`` and ``"x"``."""

from collections.abc import Callable

import torch
from torch import nn

import pyro

from .capabilities import Capabilities
from .likelihoods import Likelihood
from .registration import register

__all__ = ["VAE", "WithLikelihood"]


class WithLikelihood:
    """What a model whose observations go through its ``likelihood`` part declares and checks."""

    likelihood: Likelihood

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(untraceable=None, discrete_x=self.likelihood.discrete)

    def check_support(self, x: torch.Tensor, extra: dict[str, torch.Tensor] | None = None) -> None:
        """Raise a ValueError naming the problem unless every x is in the likelihood's support
        (the model takes no batch keys: ``extra`` is there for the protocol's sake)."""
        self.likelihood.check_support(x)


class VAE(WithLikelihood, nn.Module):
    """A latent-variable model as a Pyro program, assembled from swappable parts.

    ``model(x)`` samples ``"z"`` from the prior and observes ``"x"`` under the likelihood, both
    inside ``pyro.plate("data", B)``. Any guide that samples ``"z"`` under the same plate works
    with it.

    :param prior: a module with a ``z_dim``; ``prior(B)`` is a distribution over z with batch
        ``(B,)`` and event ``(z_dim,)``.
    :param decoder: a module mapping z ``(..., z_dim)`` to ``(..., x_dim * likelihood.params_per_dim)``.
    :param likelihood: maps the decoder output to a distribution over x with event dim 1.
    """

    def __init__(self, prior: nn.Module, decoder: nn.Module, likelihood: Likelihood):
        super().__init__()
        self.prior = prior
        self.decoder = decoder
        self.likelihood = likelihood

    @classmethod
    def build(cls, prior: nn.Module, decoder: Callable[[int, int], nn.Module], likelihood: Likelihood, x_dim: int) -> "VAE":
        """Size the decoder from the prior's ``z_dim`` and the data: what configs call."""
        return cls(prior, decoder(prior.z_dim, x_dim * likelihood.params_per_dim), likelihood)

    def forward(self, x: torch.Tensor) -> None:
        """:param x: a ``(batch, x_dim)``-shaped tensor of observations."""
        register("model", self)
        B = x.shape[0]
        with pyro.plate("data", B):
            z = pyro.sample("z", self.prior(B))  # (..., B, z_dim); particles broadcast on the left
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Draw x ~ p(x) by ancestral sampling: a ``(num_samples, x_dim)``-shaped tensor."""
        z = self.prior(num_samples).sample()
        return self.likelihood(self.decoder(z)).sample()
