"""Importance sampling on programs of other shapes than the shipped VAEs: renamed sites, two
latent layers, a plate nested inside the data plate, a discrete latent, and a sequence of
latents under ``pyro.markov``. Each is checked against its exact log p(x): to numerical
precision where the guide is the exact posterior (every weight is then p(x)), and within Monte
Carlo error where it is not."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from inference.estimators import importance_sampling
from inference.estimators.programs import particle_dim

D = 5  # pixels per point


def _gaussian_posterior(W, b, x_scale, x):
    """The exact posterior N(m(x), S) of z ~ N(0, I), x | z ~ N(W z + b, x_scale² I)."""
    precision = torch.eye(W.shape[1]) + W.T @ W / x_scale**2
    S = torch.linalg.inv(precision)
    return (x - b) @ W @ S / x_scale**2, S


class PixelPlate:
    """z ~ N(0, I₂); each pixel x_d | z ~ N(W_d·z + b_d, σ²) under a pixel plate nested inside the
    data plate, the dims explicit as Pyro's tutorials write them; the guide is the exact posterior."""

    def __init__(self):
        g = torch.Generator().manual_seed(1)
        self.W, self.b, self.x_scale = torch.randn(D, 2, generator=g), torch.randn(D, generator=g), 0.7

    def model(self, x):
        with pyro.plate("data", x.shape[0], dim=-2):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))  # (..., B, 1, 2)
            loc = z.squeeze(-2) @ self.W.T + self.b  # (..., B, D)
            with pyro.plate("pixels", D, dim=-1):
                pyro.sample("x", dist.Normal(loc, self.x_scale), obs=x)

    def guide(self, x):
        m, S = _gaussian_posterior(self.W, self.b, self.x_scale, x)
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("z", dist.MultivariateNormal(m.unsqueeze(-2), covariance_matrix=S))

    def exact(self, x):
        cov = self.W @ self.W.T + self.x_scale**2 * torch.eye(D)
        return dist.MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x)

    def data(self, n):
        z = torch.randn(n, 2)
        return z @ self.W.T + self.b + self.x_scale * torch.randn(n, D)


class TwoLayers:
    """Sites named otherwise: ``top`` ~ N(0, I₂), ``bottom`` | top ~ N(A·top, s²I₃), ``pixels`` |
    bottom ~ N(W·bottom + b, σ²I); the guide q(top | x) q(bottom | top, x) is the exact posterior."""

    def __init__(self):
        g = torch.Generator().manual_seed(2)
        self.A, self.s = torch.randn(3, 2, generator=g), 0.5
        self.W, self.b, self.x_scale = torch.randn(D, 3, generator=g), torch.randn(D, generator=g), 0.6

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            top = pyro.sample("top", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            bottom = pyro.sample("bottom", dist.Normal(top @ self.A.T, self.s).to_event(1))
            pyro.sample("pixels", dist.Normal(bottom @ self.W.T + self.b, self.x_scale).to_event(1), obs=x)

    def _posterior(self, x):
        """The exact Gaussian posterior of u = (top, bottom): mean (B, 5) and covariance (5, 5)."""
        prior = torch.cat([torch.cat([torch.eye(2), self.A.T], 1), torch.cat([self.A, self.A @ self.A.T + self.s**2 * torch.eye(3)], 1)])
        H = torch.cat([torch.zeros(D, 2), self.W], 1)
        cov = torch.linalg.inv(torch.linalg.inv(prior) + H.T @ H / self.x_scale**2)
        return (x - self.b) @ H @ cov / self.x_scale**2, cov

    def guide(self, x):
        mean, cov = self._posterior(x)
        gain = cov[2:, :2] @ torch.linalg.inv(cov[:2, :2])  # bottom | top: a linear regression on top
        with pyro.plate("data", x.shape[0]):
            top = pyro.sample("top", dist.MultivariateNormal(mean[:, :2], covariance_matrix=cov[:2, :2]))
            loc = mean[:, 2:] + (top - mean[:, :2]) @ gain.T
            pyro.sample("bottom", dist.MultivariateNormal(loc, covariance_matrix=cov[2:, 2:] - gain @ cov[:2, 2:]))

    def exact(self, x):
        latent = self.A @ self.A.T + self.s**2 * torch.eye(3)
        return dist.MultivariateNormal(self.b, covariance_matrix=self.W @ latent @ self.W.T + self.x_scale**2 * torch.eye(D)).log_prob(x)

    def data(self, n):
        top = torch.randn(n, 2)
        bottom = top @ self.A.T + self.s * torch.randn(n, 3)
        return bottom @ self.W.T + self.b + self.x_scale * torch.randn(n, D)


class Mixture:
    """A discrete latent: y ~ Categorical(π) over 3 classes, x | y ~ N(μ_y, I); the guide proposes
    y uniformly, so the weights vary and the estimate has Monte Carlo error."""

    def __init__(self):
        self.logits, self.means = torch.tensor([0.2, -0.3, 0.1]), 1.5 * torch.randn(3, D, generator=torch.Generator().manual_seed(3))

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(logits=self.logits))
            pyro.sample("x", dist.Normal(self.means[y], 1.0).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Categorical(logits=torch.zeros(3)))

    def exact(self, x):
        per_class = dist.Normal(self.means, 1.0).to_event(1).log_prob(x.unsqueeze(-2))  # (B, 3)
        return torch.logsumexp(per_class + self.logits.log_softmax(-1), -1)

    def data(self, n):
        y = dist.Categorical(logits=self.logits).sample((n,))
        return self.means[y] + torch.randn(n, D)


class Sequence:
    """A latent AR(1) state, one site per step under ``pyro.markov``: z_t = a·z_{t−1} + ε_t,
    x_t = z_t + σ·η_t; the guide is mean-field, q(z_t | x) = N(c·x_t, r²)."""

    a, noise, x_scale = 0.8, 0.6, 0.5

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = 0.0
            for t in pyro.markov(range(x.shape[1])):
                z = pyro.sample(f"z_{t}", dist.Normal(self.a * z, self.noise if t else 1.0))
                pyro.sample(f"x_{t}", dist.Normal(z, self.x_scale), obs=x[:, t])

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            for t in pyro.markov(range(x.shape[1])):
                pyro.sample(f"z_{t}", dist.Normal(0.7 * x[:, t], 0.45))

    def exact(self, x):
        T = x.shape[1]
        variance = [1.0]
        for _ in range(T - 1):
            variance.append(self.a**2 * variance[-1] + self.noise**2)
        t = torch.arange(T)
        cov = self.a ** (t[:, None] - t[None, :]).abs().double() * torch.tensor(variance).double()[torch.minimum(t[:, None], t[None, :])]
        cov = cov.float() + self.x_scale**2 * torch.eye(T)
        return dist.MultivariateNormal(torch.zeros(T), covariance_matrix=cov).log_prob(x)

    def data(self, n, T=6):
        z, xs = torch.randn(n), []
        for t in range(T):
            z = z if t == 0 else self.a * z + self.noise * torch.randn(n)
            xs.append(z + self.x_scale * torch.randn(n))
        return torch.stack(xs, 1)


@pytest.mark.parametrize("program", [PixelPlate, TwoLayers], ids=["pixel_plate", "two_layers_renamed"])
@pytest.mark.parametrize("seed", [None, 5], ids=["unseeded", "seeded"])
def test_the_exact_posterior_as_guide_gives_the_exact_log_px(program, seed):
    """Every weight is p(x, z)/p(z|x) = p(x), so the estimate is exact whatever K and the passes."""
    program = program()
    x = program.data(40)
    for chunk_size in (10**6, 7):
        estimate = importance_sampling(program.model, program.guide, x, num_particles=16, chunk_size=chunk_size, seed=seed)
        assert torch.allclose(estimate.log_px, program.exact(x), atol=2e-4), (estimate.log_px - program.exact(x)).abs().max()
        assert torch.allclose(estimate.elbo, program.exact(x), atol=2e-4)


@pytest.mark.parametrize("program", [Mixture, Sequence], ids=["discrete", "markov_sequence"])
def test_an_inexact_guide_estimates_the_exact_log_px_within_monte_carlo_error(program):
    program = program()
    x = program.data(200)
    K = 2000
    difference = importance_sampling(program.model, program.guide, x, num_particles=K, seed=1).log_px - program.exact(x)
    mean, stderr = difference.mean().item(), difference.std().item() / math.sqrt(len(difference))
    # log p̂ is biased low by about Var(w)/(2K E[w]²); for these guides that is under 1e-3
    assert abs(mean) <= 4 * stderr + 1e-3, f"{mean:.4f} ± {stderr:.4f}"
    assert stderr < 0.02  # the check has teeth: the estimate is tight around the exact value


@pytest.mark.parametrize("program", [PixelPlate, TwoLayers, Mixture, Sequence], ids=["pixel_plate", "two_layers", "discrete", "sequence"])
@pytest.mark.parametrize("proposal", ["guide", "prior"])
def test_a_seeded_estimate_does_not_depend_on_the_passes(program, proposal):
    program = program()
    x = program.data(9)
    guide = program.guide if proposal == "guide" else None
    whole = importance_sampling(program.model, guide, x, num_particles=30, chunk_size=10**6, seed=2)
    for chunk_size in (4, 31, 100):
        passes = importance_sampling(program.model, guide, x, num_particles=30, chunk_size=chunk_size, seed=2)
        assert torch.allclose(passes.log_px, whole.log_px, atol=1e-5)


def test_the_particle_dimension_is_left_of_every_plate():
    assert particle_dim(Mixture().model, Mixture().guide, torch.zeros(2, D)) == -2
    assert particle_dim(PixelPlate().model, PixelPlate().guide, torch.zeros(2, D)) == -3


def test_a_trace_made_outside_the_particle_plate_is_refused_naming_it():
    from pyro import poutine

    from inference.estimators.programs import site_log_probs

    trace = poutine.trace(Mixture().model).get_trace(torch.zeros(3, D))
    with pytest.raises(ValueError, match=r"site 'y' was traced outside pyro.plate\('particles', K\)"):
        site_log_probs(trace, 1, 3, observed=None)
