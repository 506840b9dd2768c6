"""The amortized full-covariance Gaussian guide: q(z|x) = N(z_loc(x), L(x) L(x)ᵀ)."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import pyro
import pyro.distributions as dist

from models.capabilities import Capabilities
from models.registration import register

from .normal import check_guide_arguments

__all__ = ["AmortizedFullRank"]


class AmortizedFullRank(nn.Module):
    """A Gaussian posterior with correlations: the encoder predicts the loc and the lower
    triangle of a Cholesky factor L, whose diagonal is kept positive by softplus plus a floor.

    It contains the exact posterior of a linear-Gaussian model, so there its approximation gap
    is zero; a diagonal guide's is not when the posterior is correlated.

    :param encoder: a factory ``encoder(in_features, out_features)``; asked for
        ``z_dim + z_dim·(z_dim + 1)/2`` outputs.
    """

    capabilities = Capabilities(untraceable=None, encoder=True)

    def __init__(self, encoder: Callable[[int, int], nn.Module], x_dim: int, z_dim: int, scale_floor: float = 1e-3):
        super().__init__()
        check_guide_arguments("AmortizedFullRank", z_dim, scale_floor)
        self.z_dim, self.scale_floor = z_dim, scale_floor
        self.encoder = encoder(x_dim, z_dim + z_dim * (z_dim + 1) // 2)
        rows, cols = torch.tril_indices(z_dim, z_dim)
        self.register_buffer("rows", rows)
        self.register_buffer("cols", cols)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(z|x) with batch shape ``(batch,)`` and event shape ``(z_dim,)``."""
        out = self.encoder(x)
        z_loc, tril_entries = out[..., : self.z_dim], out[..., self.z_dim :]
        z_scale_tril = out.new_zeros(*out.shape[:-1], self.z_dim, self.z_dim)
        z_scale_tril[..., self.rows, self.cols] = tril_entries
        diagonal = F.softplus(z_scale_tril.diagonal(dim1=-2, dim2=-1)) + self.scale_floor
        z_scale_tril = z_scale_tril.tril(-1) + torch.diag_embed(diagonal)
        return dist.MultivariateNormal(z_loc, scale_tril=z_scale_tril, validate_args=False)

    def forward(self, x: torch.Tensor) -> None:
        register("guide", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.posterior(x))
