"""A VAE with two stochastic layers: p(x, z1, z2) = p(z2) p(z1 | z2) p(x | z1)."""

from collections.abc import Callable, Sequence

import torch
from torch import nn

import pyro

from .distributions import diagonal_normal
from .likelihoods import Likelihood
from .networks import MLP
from .registration import register
from .vae import WithLikelihood

__all__ = ["HierarchicalVAE"]


class HierarchicalVAE(WithLikelihood, nn.Module):
    """The two-stochastic-layer model of the IWAE paper (Burda et al. 2016, §5):
    z2 ~ prior, z1 | z2 ~ N(μ(z2), diag σ(z2)²), x | z1 ~ likelihood(decoder(z1)).

    Sites ``"z2"``, ``"z1"`` and ``"x"``, all under ``pyro.plate("data", B)``; its guide is
    :class:`~guides.hierarchical.HierarchicalGuide`. The estimators need nothing specific: they
    weigh every latent site of the traces.

    :param prior: p(z2), a module with a ``z_dim``.
    :param middle: a module mapping z2 to the ``2·z1_dim`` parameters of p(z1 | z2).
    :param decoder: a module mapping z1 to the likelihood's parameters.
    """

    def __init__(self, prior: nn.Module, middle: nn.Module, decoder: nn.Module, likelihood: Likelihood, scale_floor: float = 1e-3):
        super().__init__()
        self.prior, self.middle, self.decoder, self.likelihood = prior, middle, decoder, likelihood
        self.scale_floor = scale_floor

    @classmethod
    def build(
        cls,
        prior: nn.Module,
        decoder: Callable[[int, int], nn.Module],
        likelihood: Likelihood,
        x_dim: int,
        z1_dim: int = 100,
        hidden: Sequence[int] = (100, 100),
        activation: str = "Tanh",
    ) -> "HierarchicalVAE":
        """Size the networks: ``hidden`` for z2 → z1, the decoder factory for z1 → x."""
        middle = MLP(prior.z_dim, 2 * z1_dim, hidden, activation)
        return cls(prior, middle, decoder(z1_dim, x_dim * likelihood.params_per_dim), likelihood)

    def _p_z1(self, z2: torch.Tensor):
        return diagonal_normal(self.middle(z2), self.scale_floor)

    def forward(self, x: torch.Tensor) -> None:
        register("model", self)
        B = x.shape[0]
        with pyro.plate("data", B):
            z2 = pyro.sample("z2", self.prior(B))
            z1 = pyro.sample("z1", self._p_z1(z2))
            pyro.sample("x", self.likelihood(self.decoder(z1)), obs=x)

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        z1 = self._p_z1(self.prior(num_samples).sample()).sample()
        return self.likelihood(self.decoder(z1)).sample()
