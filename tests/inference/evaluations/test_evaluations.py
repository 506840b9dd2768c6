"""Each evaluation on a tiny program, called directly with a context as a run calls it: its
numbers against what is known exactly, without a training run."""

import dataclasses

import pyro
import pyro.distributions as dist
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import assert_not_above_within_monte_carlo, assert_same_within_monte_carlo
from inference.data import Dataset, linear_gaussian
from inference.estimators import ais
from inference.evaluations import Accuracy, Annealed, BitsPerDim, Context, Gaps, LogPx, Posterior, Probe, Programs
from inference.evaluations.active_units import ActiveUnits
from models import VAE, Bernoulli, Gaussian, LinearGaussian, StandardNormal
from models.capabilities import Capabilities


def context(model, guide, data: Dataset, tmp_path, split: str = "test", **settings) -> Context:
    shared = OmegaConf.create({"num_particles": 1000, "chunk_size": None, "memory_budget_mb": 64.0, "max_points": None, "figures": False, **settings})
    return Context(model.eval(), guide.eval(), data.split(split), {}, split, data, tmp_path, shared, Programs.of(model, guide, data))


class Encoding(nn.Module):
    """q(z | x) = N(x's first coordinates, then zeros; ``scale``): posterior means known exactly."""

    capabilities = Capabilities(untraceable=None)

    def __init__(self, moving: int, z_dim: int, scale: float = 1e-3):
        super().__init__()
        self.moving, self.z_dim, self.scale = moving, z_dim, scale

    def forward(self, x):
        z_loc = torch.cat([x[:, : self.moving], x.new_zeros(x.shape[0], self.z_dim - self.moving)], -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(z_loc, self.scale).to_event(1))


def test_log_px_agrees_with_the_exact_value_by_either_proposal(tmp_path):
    data = linear_gaussian(x_dim=6, z_dim=2, num_train=10, num_valid=0, num_test=100)
    model = LinearGaussian(StandardNormal(2), nn.Linear(2, 6), Gaussian(1.0))
    guide = Encoding(0, 2, scale=2.0)  # q(z | x) = N(0, 2²): wider than the posterior, a safe proposal at K=2000
    run = context(model, guide, data, tmp_path, num_particles=2000)
    out = LogPx(prior_proposal=True)(run)
    assert set(out) == {"elbo", "log_px", "log_px_prior", "log_px_exact", "chunk_size", "seconds"}
    exact = run.per_point["log_px_exact"]
    for key in ("log_px", "log_px_prior"):
        assert_same_within_monte_carlo(run.per_point[key], exact, f"{key} against the exact log p(x)")
    assert_not_above_within_monte_carlo(run.per_point["elbo"], exact, "the ELBO")
    assert out["log_px"]["mean"] == pytest.approx(float(run.per_point["log_px"].mean()), rel=1e-6)


def test_bits_per_dimension_of_fair_coins_are_one(tmp_path):
    """A model whose pixels are fair coins whatever z gives every binary image 2^-D: one bit per dimension."""
    pixels = (torch.rand(3, 40, 16) < 0.5).float()
    data = Dataset("coins", *pixels, image_shape=(16,), levels=2)
    decoder = nn.Linear(2, 16)
    nn.init.zeros_(decoder.weight), nn.init.zeros_(decoder.bias)  # logits 0: p = 1/2
    model, guide = VAE(StandardNormal(2), decoder, Bernoulli()), Encoding(0, 2, scale=1.0)  # the prior, here the posterior
    run = context(model, guide, data, tmp_path, num_particles=4)
    assert BitsPerDim().unsupported(run.programs, data) is None
    run.results.update(LogPx(prior_proposal=False)(run))
    assert BitsPerDim()(run) == {"bits_per_dim": pytest.approx(1.0, abs=1e-6), "bits_levels": 2}
    gaussian = VAE(StandardNormal(2), decoder, Gaussian(1.0))
    assert "probability mass function" in BitsPerDim().unsupported(Programs.of(gaussian, guide, data), data)


def test_the_probe_reads_factors_that_are_linear_in_the_posterior_means_and_no_others(tmp_path):
    points = torch.randn(3, 300, 4)
    factors = {name: torch.stack([x[:, :2] @ torch.tensor([1.5, -2.0]) + 0.5, torch.randn(len(x))], -1) for name, x in zip(("train", "valid", "test"), points)}
    data = Dataset("linear", *points, image_shape=(4,), factors=factors, factor_names=("linear", "noise"))
    model, guide = VAE(StandardNormal(2), nn.Linear(2, 4), Gaussian(1.0)), Encoding(2, 2)
    probe = Probe(site="z")
    assert probe.unsupported(Programs.of(model, guide, data), data) is None
    r2 = probe(context(model, guide, data, tmp_path))["probe"]["r2"]
    assert r2["linear"] > 0.999 and r2["noise"] < 0.05  # out of sample: noise scores about −2/300
    no_factors = Dataset("plain", *points, image_shape=(4,))
    assert "known factors" in probe.unsupported(Programs.of(model, guide, no_factors), no_factors)


def test_active_units_count_the_latent_dimensions_that_move_with_the_data(tmp_path):
    points = torch.randn(3, 100, 4)
    data = Dataset("moving", *points, image_shape=(4,))
    model, guide = VAE(StandardNormal(5), nn.Linear(5, 4), Gaussian(1.0)), Encoding(3, 5)
    units = ActiveUnits(site="z")(context(model, guide, data, tmp_path))["active_units"]
    assert units["active"] == 3 and units["count"] == 5
    assert units["variances"][:3] == pytest.approx([1.0] * 3, abs=0.35) and max(units["variances"][3:]) < 1e-4
    with pytest.raises(ValueError, match="threshold=0: expected a positive variance"):
        ActiveUnits(threshold=0)


class NestedPixels(nn.Module):
    """x = a·w₀ + b·w₁ + 0.5 ε: two latent sites under the data plate (at dim −2) and x's pixels
    in a plate of their own inside it, as a user writes a per-pixel likelihood; with ``per_pixel``
    a latent offset per pixel too, which AIS cannot move as one vector."""

    capabilities = Capabilities(untraceable=None)

    def __init__(self, x_dim: int = 6, per_pixel: bool = False):
        super().__init__()
        self.w, self.per_pixel = torch.linspace(-1.0, 1.0, 2 * x_dim).reshape(2, x_dim), per_pixel

    def forward(self, x):
        with pyro.plate("data", x.shape[0], dim=-2):
            a = pyro.sample("a", dist.Normal(x.new_zeros(()), 1.0))  # (B, 1)
            b = pyro.sample("b", dist.Normal(x.new_zeros(()), 1.0))
            with pyro.plate("pixels", x.shape[1], dim=-1):
                offset = pyro.sample("offset", dist.Normal(x.new_zeros(()), 1.0)) if self.per_pixel else 0.0
                pyro.sample("x", dist.Normal(a * self.w[0] + b * self.w[1] + offset, 0.5), obs=x)

    def exact_log_px(self, x):
        covariance = self.w.T @ self.w + 0.25 * torch.eye(x.shape[1])
        return dist.MultivariateNormal(x.new_zeros(x.shape[1]), covariance).log_prob(x)


class FlatPixels(nn.Module):
    """The model of ``NestedPixels`` with x under the data plate alone (an event of 6 pixels)."""

    def __init__(self, nested: NestedPixels):
        super().__init__()
        self.w = nested.w

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            a = pyro.sample("a", dist.Normal(x.new_zeros(()), 1.0))  # (B,)
            b = pyro.sample("b", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(a[..., None] * self.w[0] + b[..., None] * self.w[1], 0.5).to_event(1), obs=x)


class NestedGuide(nn.Module):
    """q(a | x) q(b | x), each Normal from a linear ``encoder``, under the data plate at dim −2;
    untrained, the prior (an encoder of zero weights, and scales of 1)."""

    capabilities = Capabilities(untraceable=None, encoder=True)

    def __init__(self, x_dim: int = 6):
        super().__init__()
        self.encoder = nn.Linear(x_dim, 4)
        with torch.no_grad():
            self.encoder.weight.zero_(), self.encoder.bias.copy_(torch.tensor([0.0, 0.0, 0.5413, 0.5413]))  # softplus(0.5413) = 1

    def forward(self, x):
        params = self.encoder(x)
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("a", dist.Normal(params[:, :1], nn.functional.softplus(params[:, 2:3]) + 1e-3))
            pyro.sample("b", dist.Normal(params[:, 1:2], nn.functional.softplus(params[:, 3:4]) + 1e-3))


def test_ais_nuts_and_the_gaps_take_a_plate_of_observed_sites_inside_the_data_plate(tmp_path):
    """AIS, NUTS and the gaps on a program whose x sits in a pixel plate inside the data plate:
    AIS is that of the same model written flat, and agrees with importance sampling on the same
    points within Monte Carlo error; the AIS method with BDMC, NUTS's posterior of (a, b) and the
    gaps come out; a latent in the pixel plate is refused with the reason."""
    model, guide = NestedPixels(), NestedGuide()
    with torch.no_grad():
        points = torch.randn(3, 24, 2) @ model.w + 0.5 * torch.randn(3, 24, 6)
    data = Dataset("nested", *points, image_shape=(6,))
    run = context(model, guide, data, tmp_path, num_particles=2000)
    assert run.programs.latent_vector is None
    # AIS on the nested program is AIS on the same model written with x under the data plate alone, draw for draw
    flat = {}
    for program in (model, FlatPixels(model)):
        pyro.set_rng_seed(1)
        flat[type(program).__name__] = ais(program, run.x, steps=50, leapfrog=3, chains=4).log_px
    assert torch.equal(flat["NestedPixels"], flat["FlatPixels"])
    # and agrees with importance sampling on the same points, within Monte Carlo error (paired over the points)
    LogPx(prior_proposal=False)(run)
    assert_same_within_monte_carlo(flat["NestedPixels"], run.per_point["log_px"], "AIS against importance sampling")
    few = dataclasses.replace(run, settings=OmegaConf.merge(run.settings, {"num_particles": 64}))
    method = Annealed(points=2, steps=5, leapfrog=2, chains=2)(few)
    assert method["log_px_ais"]["n"] == 2 and method["bdmc"]["points"] == 2
    posterior = Posterior(points=2, samples=40, warmup=40, chains=2)(few)["posterior"]
    assert posterior["points"] == 2 and posterior["nuts_r_hat_max"] < 1.3
    gaps = Gaps(points=2, particles=200, fit_steps=200)(few)["gaps"]
    assert gaps["points"] == 2 and gaps["inference"]["mean"] > 0  # log p(x) above the ELBO of a guide that is the prior
    per_pixel = NestedPixels(per_pixel=True)
    reason = Programs.of(per_pixel, None, data).latent_vector
    assert reason == "latents under the data plate alone; the model's latent site 'offset' sits in the plate 'pixels' inside it"
    assert "AIS here anneals latents under the data plate alone" in Annealed().unsupported(Programs.of(per_pixel, None, data), data)


class Thresholds(nn.Module):
    """A guide whose classifier q(y | x) says y = 1 where x's first value is positive, else 0."""

    capabilities = Capabilities(untraceable=None, classifier=True)

    def __init__(self):
        super().__init__()
        self.classifier = nn.Linear(1, 2)

    def classify(self, x):
        return torch.stack([-x[:, 0], x[:, 0]], -1)

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))


def test_accuracy_is_the_share_of_points_whose_most_probable_class_is_their_label(tmp_path):
    points = torch.randn(3, 50, 4)
    labels = {name: (x[:, 0] > 0).long() for name, x in zip(("train", "valid", "test"), points)}
    labels["test"][:10] = 1 - labels["test"][:10]  # ten of fifty wrong
    data = Dataset("signs", *points, image_shape=(4,), labels=labels)
    model, guide = VAE(StandardNormal(2), nn.Linear(2, 4), Gaussian(1.0)), Thresholds()
    accuracy = Accuracy(supervised_only_steps=0)
    assert accuracy.unsupported(Programs.of(model, guide, data), data) is None
    assert accuracy(context(model, guide, data, tmp_path)) == {"accuracy": pytest.approx(0.8)}
    assert "classifier" in accuracy.unsupported(Programs.of(model, Encoding(0, 2), data), data)
    assert "labelled data" in accuracy.unsupported(Programs.of(model, guide, Dataset("plain", *points, image_shape=(4,))), Dataset("plain", *points, image_shape=(4,)))
