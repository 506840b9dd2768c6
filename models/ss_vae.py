"""The semi-supervised VAE of Kingma, Rezende, Mohamed & Welling (2014), "M2".

y ~ Categorical(uniform), z ~ p(z), x ~ p(x | decoder([z, one-hot y])), all under the data
plate. The class label y is observed where the dataset's batch key ``mask`` says so and latent
elsewhere, in one site: Pyro's ``obs_mask`` splits it into ``y_observed`` (scored) and
``y_unobserved`` (for the guide to propose or enumerate). Without labels (``y=None``) y is a
plain latent site ``y``, as for drawing from the model.
"""

import torch
from torch import nn
from torch.nn import functional as F

import pyro
import pyro.distributions as dist

from .capabilities import Capabilities
from .likelihoods import Likelihood
from .priors import VampPrior
from .registration import register
from .vae import WithLikelihood

__all__ = ["SemiSupervisedVAE", "with_one_hot"]


def with_one_hot(h: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[h, one-hot y] along the last dimension, the two broadcast against each other's batch
    dimensions (particles or enumerated classes on the left)."""
    code = F.one_hot(y, num_classes).to(h.dtype)
    shape = torch.broadcast_shapes(h.shape[:-1], code.shape[:-1])
    return torch.cat([h.expand(*shape, h.shape[-1]), code.expand(*shape, num_classes)], -1)


class SemiSupervisedVAE(WithLikelihood, nn.Module):
    """M2: p(y) p(z) p(x | y, z). ``forward(x, y=None, mask=None)`` takes the batch keys ``y``
    (class labels) and ``mask`` (which of them are observed).

    :param decoder: a module from ``z_dim + num_classes`` to the likelihood's parameters.
    """

    def __init__(self, prior: nn.Module, decoder: nn.Module, likelihood: Likelihood, num_classes: int = 10):
        super().__init__()
        if isinstance(prior, VampPrior):
            raise ValueError(
                "prior=vamp pushes its pseudo-inputs through the guide's encoder of x alone, but model=ss_vae's guide encodes x "
                "with its class; choose a prior that needs no encoder (standard_normal, learned_normal, mixture, flow)"
            )
        self.prior, self.decoder, self.likelihood, self.num_classes = prior, decoder, likelihood, num_classes

    @classmethod
    def build(cls, prior: nn.Module, decoder, likelihood: Likelihood, x_dim: int, num_classes: int = 10) -> "SemiSupervisedVAE":
        """Size the decoder for [z, one-hot y]: what configs call."""
        return cls(prior, decoder(prior.z_dim + num_classes, x_dim * likelihood.params_per_dim), likelihood, num_classes)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(untraceable=None, discrete_x=self.likelihood.discrete, batch_keys=("y", "mask"))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> None:
        register("model", self)
        B = x.shape[0]
        with pyro.plate("data", B):
            y = pyro.sample("y", dist.Categorical(logits=x.new_zeros(self.num_classes)), obs=y, obs_mask=None if y is None else mask)
            z = pyro.sample("z", self.prior(B))
            pyro.sample("x", self.likelihood(self.decoder(with_one_hot(z, y, self.num_classes))), obs=x)
