"""The prior as the guide: q(z|x) = p(z), the naive baseline that ignores x."""

import torch
from torch import nn

import pyro

from models.capabilities import Capabilities
from models.registration import register

__all__ = ["PriorGuide"]


class PriorGuide(nn.Module):
    """Proposes z from the model's own prior, whatever x is. Its ELBO is E_p(z)[log p(x|z)]
    and its importance sampling is the naive estimator: the seed argument made concrete.

    :param prior: the model's prior module (shared, not copied: a learned prior stays one).
    """

    capabilities = Capabilities(untraceable=None)

    def __init__(self, prior: nn.Module):
        super().__init__()
        self.prior = prior
        self.z_dim = prior.z_dim

    def forward(self, x: torch.Tensor) -> None:
        register("guide", self)
        B = x.shape[0]
        with pyro.plate("data", B):
            pyro.sample("z", self.prior(B))
