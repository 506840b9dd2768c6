"""Priors p(z): modules that return a Pyro distribution over z with event dim 1.

A prior is an ``nn.Module`` called with the batch size. Learned parameters (mixture weights,
pseudo-inputs, flows) live in the module, so the model's ``pyro.module`` registers them.
"""

import torch
from torch import nn

import pyro.distributions as dist

__all__ = ["StandardNormal"]


class StandardNormal(nn.Module):
    """p(z) = N(0, I).

    :param int z_dim: size of the latent.
    """

    def __init__(self, z_dim: int):
        super().__init__()
        if z_dim <= 0:
            raise ValueError(f"StandardNormal: z_dim must be a positive integer, got {z_dim}")
        self.z_dim = z_dim
        # Buffers rather than constants, so that ``.to(device)`` moves them with the model.
        self.register_buffer("z_loc", torch.zeros(z_dim))
        self.register_buffer("z_scale", torch.ones(z_dim))

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        """:returns: a distribution with batch shape ``(batch_size,)`` and event shape ``(z_dim,)``."""
        return dist.Normal(self.z_loc, self.z_scale).expand([batch_size, self.z_dim]).to_event(1)
