"""The amortized guide of the two-layer model: q(z1, z2 | x) = q(z1 | x) q(z2 | z1)."""

from collections.abc import Callable, Sequence

import torch
from torch import nn

import pyro

from models.capabilities import Capabilities
from models.distributions import diagonal_normal
from models.networks import MLP
from models.registration import register

from .normal import check_guide_arguments

__all__ = ["HierarchicalGuide"]


class HierarchicalGuide(nn.Module):
    """Bottom-up diagonal Gaussians mirroring :class:`~models.hierarchical.HierarchicalVAE`
    (Burda et al. 2016, §5): z1 from x through the encoder, then z2 from z1 through an MLP.

    :param encoder: a factory ``encoder(in_features, out_features)`` for the x → z1 network.
    :param int z_dim: size of the top latent z2.
    :param int z1_dim: size of the bottom latent z1; must match the model's.
    :param hidden: hidden widths of the z1 → z2 network.
    """

    capabilities = Capabilities(untraceable=None, encoder=True)

    def __init__(
        self,
        encoder: Callable[[int, int], nn.Module],
        x_dim: int,
        z_dim: int,
        z1_dim: int = 100,
        hidden: Sequence[int] = (100, 100),
        activation: str = "Tanh",
        scale_floor: float = 1e-3,
    ):
        super().__init__()
        check_guide_arguments("HierarchicalGuide", z_dim, scale_floor)
        check_guide_arguments("HierarchicalGuide", z1_dim, scale_floor)
        self.encoder = encoder(x_dim, 2 * z1_dim)
        self.top = MLP(z1_dim, 2 * z_dim, hidden, activation)
        self.z_dim, self.scale_floor = z_dim, scale_floor

    def forward(self, x: torch.Tensor) -> None:
        register("guide", self)
        with pyro.plate("data", x.shape[0]):
            z1 = pyro.sample("z1", diagonal_normal(self.encoder(x), self.scale_floor))
            pyro.sample("z2", diagonal_normal(self.top(z1), self.scale_floor))  # (..., B, z_dim)
