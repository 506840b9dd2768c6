"""The amortized diagonal Normal guide: q(z|x) = N(z_loc(x), diag z_scale(x)²)."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import pyro
import pyro.distributions as dist

__all__ = ["AmortizedNormal"]


class AmortizedNormal(nn.Module):
    """Mean-field Gaussian posterior whose parameters an encoder network predicts from x
    (Kingma & Welling 2014). ``guide(x)`` samples site ``"z"`` under ``pyro.plate("data", B)``,
    mirroring :class:`~models.vae.VAE`.

    :param encoder: a factory ``encoder(in_features, out_features) -> nn.Module``; the guide
        asks it for a network from ``x_dim`` to ``2 * z_dim`` outputs (loc and raw scale).
    :param int x_dim: size of the flat data.
    :param int z_dim: size of the latent.
    :param float scale_floor: the smallest z_scale. A floor keeps log q(z|x) finite when the
        encoder pushes a scale towards zero, which would otherwise turn the ELBO into NaN.
    """

    def __init__(
        self,
        encoder: Callable[[int, int], nn.Module],
        x_dim: int,
        z_dim: int,
        scale_floor: float = 1e-3,
    ):
        super().__init__()
        if z_dim <= 0:
            raise ValueError(f"AmortizedNormal: z_dim must be a positive integer, got {z_dim}")
        if not scale_floor > 0:
            raise ValueError(f"AmortizedNormal: scale_floor must be positive, got {scale_floor}")
        self.encoder = encoder(x_dim, 2 * z_dim)
        self.z_dim = z_dim
        self.scale_floor = scale_floor

    def posterior_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:returns: ``z_loc`` and ``z_scale``, each ``(batch, z_dim)``-shaped."""
        z_loc, z_raw_scale = self.encoder(x).split(self.z_dim, dim=-1)
        return z_loc, F.softplus(z_raw_scale) + self.scale_floor

    def forward(self, x: torch.Tensor) -> None:
        """:param x: a ``(batch, x_dim)``-shaped tensor of observations."""
        pyro.module("guide", self)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = self.posterior_params(x)
            pyro.sample("z", dist.Normal(z_loc, z_scale, validate_args=False).to_event(1))
