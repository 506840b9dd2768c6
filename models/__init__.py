"""Pyro model programs and their parts: priors p(z), likelihoods p(x|z), networks, the VAEs."""

from .hierarchical import HierarchicalVAE
from .likelihoods import (
    Bernoulli,
    Beta,
    ContinuousBernoulli,
    DiscretizedLogisticLikelihood,
    Gaussian,
    Laplace,
    Likelihood,
)
from .linear_gaussian import LinearGaussian
from .networks import MLP, ConvDecoder, ConvEncoder
from .priors import FlowPrior, LearnedNormal, MixturePrior, StandardNormal, VampPrior
from .ss_vae import SemiSupervisedVAE
from .vae import VAE

__all__ = [
    "Bernoulli",
    "Beta",
    "ContinuousBernoulli",
    "ConvDecoder",
    "ConvEncoder",
    "DiscretizedLogisticLikelihood",
    "FlowPrior",
    "Gaussian",
    "HierarchicalVAE",
    "Laplace",
    "LearnedNormal",
    "Likelihood",
    "LinearGaussian",
    "MLP",
    "MixturePrior",
    "SemiSupervisedVAE",
    "StandardNormal",
    "VAE",
    "VampPrior",
]
