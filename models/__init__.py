"""Pyro model programs and their parts: priors p(z), likelihoods p(x|z), networks, the VAE."""

from .likelihoods import Bernoulli, Gaussian, Likelihood
from .linear_gaussian import LinearGaussian
from .networks import MLP
from .priors import StandardNormal
from .vae import VAE

__all__ = ["Bernoulli", "Gaussian", "Likelihood", "LinearGaussian", "MLP", "StandardNormal", "VAE"]
