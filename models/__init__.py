"""Pyro model programs and their parts: priors p(z), likelihoods p(x|z), transitions p(z_t|z_{t−1}),
networks, the VAEs and the state-space model of sequences."""

from .hierarchical import HierarchicalVAE
from .likelihoods import (
    Bernoulli,
    Beta,
    ContinuousBernoulli,
    DiscretizedLogisticLikelihood,
    Gaussian,
    Laplace,
    Likelihood,
    NegativeBinomial,
    Poisson,
)
from .linear_gaussian import LinearGaussian
from .networks import MLP, ConvDecoder, ConvEncoder, RotatingDecoder
from .physics import PhysicsTransition
from .priors import FlowPrior, LearnedNormal, MixturePrior, StandardNormal, VampPrior
from .ss_vae import SemiSupervisedVAE
from .state_space import StateSpaceModel
from .transitions import LinearTransition, NeuralTransition, Transition
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
    "LinearTransition",
    "MLP",
    "MixturePrior",
    "NegativeBinomial",
    "Poisson",
    "NeuralTransition",
    "PhysicsTransition",
    "RotatingDecoder",
    "SemiSupervisedVAE",
    "StandardNormal",
    "StateSpaceModel",
    "Transition",
    "VAE",
    "VampPrior",
]
