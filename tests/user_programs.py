"""Pyro programs written as a user would write them, outside the suite's templates: their own
site and plate names, networks registered with ``pyro.module``, parameters kept with
``pyro.param``. Tests run them through ``model=program model.program=user_programs.NAME``
(this folder is on the path of the tests)."""

import torch
from torch import nn

import pyro
import pyro.distributions as dist
from pyro.distributions import constraints

from models.capabilities import Capabilities


class PyroExampleVAE(nn.Module):
    """The VAE of Pyro's own examples: sites ``latent`` and ``obs``, networks registered with
    ``pyro.module``, built by a factory that asks for the sizes by name."""

    plate = "data"

    def __init__(self, x_dim: int, z_dim: int, hidden: int = 32):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(nn.Linear(x_dim, hidden), nn.Softplus(), nn.Linear(hidden, 2 * z_dim))
        self.decoder = nn.Sequential(nn.Linear(z_dim, hidden), nn.Softplus(), nn.Linear(hidden, x_dim))

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate(self.plate, x.shape[0]):
            z = pyro.sample("latent", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            pyro.sample("obs", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        loc, raw = self.encoder(x).chunk(2, -1)
        with pyro.plate(self.plate, x.shape[0]):
            pyro.sample("latent", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))


# A linear-Gaussian program whose two-dimensional latent is split into sites "a" and "b", with a
# learned observation noise and a learned amortized linear guide, all kept with pyro.param.
X_DIM = 10  # data=linear_gaussian's default
W = torch.linspace(-1.0, 1.0, 2 * X_DIM).reshape(X_DIM, 2)


def split_latent_model(x):
    noise = pyro.param("noise", lambda: torch.tensor(1.0, device=x.device), constraint=constraints.positive)
    bias = pyro.param("bias", lambda: torch.zeros(X_DIM, device=x.device))
    with pyro.plate("data", x.shape[0]):
        a = pyro.sample("a", dist.Normal(x.new_zeros(()), 1.0))
        b = pyro.sample("b", dist.Normal(x.new_zeros(()), 1.0))
        loc = torch.stack([a, b], -1) @ W.to(x.device).T + bias
        pyro.sample("x", dist.Normal(loc, noise).to_event(1), obs=x)


def split_latent_guide(x):
    weights = pyro.param("guide_weights", lambda: torch.zeros(X_DIM, 2, device=x.device))
    scale = pyro.param("guide_scale", lambda: torch.ones(2, device=x.device), constraint=constraints.positive)
    loc = x @ weights
    with pyro.plate("data", x.shape[0]):
        pyro.sample("a", dist.Normal(loc[..., 0], scale[0]))
        pyro.sample("b", dist.Normal(loc[..., 1], scale[1]))


split_latent_model.capabilities = Capabilities(untraceable=None)


class DiscreteMixture:
    """A mixture of two Bernoulli images with a discrete latent class per point (no networks:
    the class means and the guide's logits are pyro.param tensors)."""

    def __init__(self, x_dim: int):
        self.x_dim = x_dim

    def model(self, x):
        logits = pyro.param("component_logits", lambda: torch.randn(2, self.x_dim, device=x.device))
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("component", dist.Categorical(logits=x.new_zeros(2)))
            pyro.sample("obs", dist.Bernoulli(logits=logits[c]).to_event(1), obs=x)

    def guide(self, x):
        weights = pyro.param("class_weights", lambda: torch.zeros(self.x_dim, 2, device=x.device))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("component", dist.Categorical(logits=x @ weights))


class PlateNamedBatch(PyroExampleVAE):
    """:class:`PyroExampleVAE` with its data plate named ``batch`` (``model.data_plate=batch``)."""

    plate = "batch"


def two_arguments(x, y):  # no default for y: cannot be called as model(x)
    pass


not_a_program = 3


class ClassConditional:
    """A program that takes the class label y of each point besides x (``model.batch_keys=[y]``):
    x | z, y ~ N(W z + m_y, σ² I) with z ~ N(0, I₂), W fixed and the class means m a pyro.param.
    Its guide is the exact posterior q(z | x, y) = p(z | x, y) for the current means, so every
    importance weight equals log p(x | y) = log N(x; m_y, W Wᵀ + σ² I) (:meth:`exact_log_px`)."""

    z_dim, noise = 2, 0.5

    def __init__(self, x_dim: int, num_classes: int = 10):
        self.x_dim, self.num_classes = x_dim, num_classes
        self.W = torch.linspace(-1.0, 1.0, self.z_dim * x_dim).reshape(x_dim, self.z_dim)
        precision = torch.eye(self.z_dim) + self.W.T @ self.W / self.noise**2
        self.posterior_scale_tril = torch.linalg.cholesky(torch.linalg.inv(precision))
        self.posterior_map = torch.linalg.solve(precision, self.W.T) / self.noise**2  # E[z | x, y] = A (x − m_y)

    def class_means(self, x):
        return pyro.param("class_means", lambda: torch.zeros(self.num_classes, self.x_dim, device=x.device))

    def model(self, x, y):
        means = self.class_means(x)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z_pair", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.to(x.device).T + means[y], self.noise).to_event(1), obs=x)

    def guide(self, x, y):
        loc = (x - self.class_means(x)[y]) @ self.posterior_map.to(x.device).T
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z_pair", dist.MultivariateNormal(loc, scale_tril=self.posterior_scale_tril.to(x.device)))

    def exact_log_px(self, x, y, means):
        """log p(x | y) per point, for the class means ``means``."""
        covariance = self.W @ self.W.T + self.noise**2 * torch.eye(self.x_dim)
        return torch.distributions.MultivariateNormal(means[y], covariance).log_prob(x)


# docs/guide/programs.md, "Batches with more than x", as printed there
class ConditionalVAE(nn.Module):
    """p(z) p(x | z, y) and q(z | x, y): a VAE told each point's class."""

    def __init__(self, x_dim, z_dim, classes=10):
        super().__init__()
        self.z_dim, self.classes = z_dim, classes
        self.encoder = nn.Sequential(nn.Linear(x_dim + classes, 64), nn.Softplus(), nn.Linear(64, 2 * z_dim))
        self.decoder = nn.Sequential(nn.Linear(z_dim + classes, 64), nn.Softplus(), nn.Linear(64, x_dim))

    def one_hot(self, y, like):  # broadcast to like's batch shape: the estimators add particles on the left
        y = nn.functional.one_hot(y, self.classes).to(like.dtype)
        return y.expand(*like.shape[:-1], self.classes)

    def model(self, x, y):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            logits = self.decoder(torch.cat([z, self.one_hot(y, z)], -1))
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(self, x, y):
        pyro.module("encoder", self.encoder)
        loc, raw_scale = self.encoder(torch.cat([x, self.one_hot(y, x)], -1)).chunk(2, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw_scale) + 1e-3).to_event(1))
