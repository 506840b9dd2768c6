"""The amortized diagonal Normal guide: q(z|x) = N(z_loc(x), diag z_scale(x)²)."""

from collections.abc import Callable

import torch
from torch import nn

import pyro
import pyro.distributions as dist

from models.capabilities import Capabilities
from models.distributions import diagonal_normal, diagonal_normal_params
from models.registration import register

__all__ = ["AmortizedNormal", "check_guide_arguments"]


def check_guide_arguments(name: str, z_dim: int, scale_floor: float) -> None:
    """The arguments every Gaussian-based guide shares: a ValueError naming the guide ``name``
    unless ``z_dim`` is a positive integer and ``scale_floor`` positive."""
    if isinstance(z_dim, bool) or not isinstance(z_dim, int) or z_dim <= 0:
        raise ValueError(f"{name}: z_dim must be a positive integer, got {z_dim}")
    if not scale_floor > 0:
        raise ValueError(f"{name}: scale_floor must be positive, got {scale_floor}")


class AmortizedNormal(nn.Module):
    """Mean-field Gaussian posterior whose parameters an encoder network predicts from x
    (Kingma & Welling 2014). ``guide(x)`` samples site ``"z"`` under ``pyro.plate("data", B)``,
    mirroring :class:`~models.vae.VAE`.

    :param encoder: a factory ``encoder(in_features, out_features) -> nn.Module``; the guide
        asks it for a network from ``x_dim`` to ``2 * z_dim`` outputs (loc and raw scale).
    :param int x_dim: size of the flat data.
    :param int z_dim: size of the latent.
    :param float scale_floor: the smallest z_scale.
    """

    capabilities = Capabilities(untraceable=None, encoder=True, posterior_params=True)

    def __init__(self, encoder: Callable[[int, int], nn.Module], x_dim: int, z_dim: int, scale_floor: float = 1e-3):
        super().__init__()
        check_guide_arguments("AmortizedNormal", z_dim, scale_floor)
        self.encoder = encoder(x_dim, 2 * z_dim)
        self.z_dim = z_dim
        self.scale_floor = scale_floor

    def posterior_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:returns: ``z_loc`` and ``z_scale``, each ``(batch, z_dim)``-shaped."""
        return diagonal_normal_params(self.encoder(x), self.scale_floor)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(z|x) with batch shape ``(batch,)`` and event shape ``(z_dim,)``."""
        return diagonal_normal(self.encoder(x), self.scale_floor)

    def forward(self, x: torch.Tensor) -> None:
        """:param x: a ``(batch, x_dim)``-shaped tensor of observations."""
        register("guide", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.posterior(x))
