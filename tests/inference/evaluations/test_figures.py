"""Every figure of a run is written, non-empty, at its pixel size; the NUTS gold standard."""

import struct

import pyro
import pytest
import torch

from conftest import CORRELATED_W, SMALL_NETS, TINY, X_SCALE, compose_config
from inference.evaluations import figures
from inference.estimators import posterior
from inference.estimators.arviz_import import az
from inference.estimators.posterior import nuts
from inference.train import train
from models import LinearGaussian

FIGURES = [
    "training_curve.png",
    "prior_samples.png",
    "reconstructions.png",
    "posterior_as_prior.png",
    "traversals.png",
    "latent_means.png",
    "log_px_against_k.png",
    "posterior_pairs.png",
    "posterior_contour.png",
]


def png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.mark.slow  # every figure, and NUTS: about 7 s
def test_a_tiny_run_draws_every_figure_and_its_posterior_files(tmp_path):
    overrides = [*TINY, *SMALL_NETS, "z_dim=2", "evaluation.figures=true", "evaluation.num_particles=50"]
    overrides += ["evaluation.posterior_points=2", "evaluation.posterior_samples=50", "evaluation.posterior_warmup=50"]
    metrics = train(compose_config(*overrides), tmp_path)
    for name in FIGURES:
        path = tmp_path / "plots" / name
        assert path.stat().st_size > 5_000, name
        assert png_size(path) == (figures.SIZE[0] * figures.DPI, figures.SIZE[1] * figures.DPI), name
    posterior = metrics["test"]["posterior"]
    assert posterior["points"] == 2 and posterior["scale_ratio"] > 0
    # R̂ and ESS are those of the draws in posterior.nc (which az.summary rounds to 2 digits), and
    # the chains of a 2-dim posterior mix, if not to the < 1.01 that Vehtari et al. (2021) ask
    # of long chains: these are 50 draws after 50 of warm-up
    draws = az.from_netcdf(tmp_path / "posterior.nc")
    r_hat, ess = az.rhat(draws.posterior)["z"].max().item(), az.ess(draws.posterior, method="bulk")["z"].min().item()
    assert posterior["nuts_r_hat_max"] == pytest.approx(r_hat, abs=0.0051) and r_hat < 1.2
    assert posterior["nuts_ess_bulk_min"] == pytest.approx(ess, abs=0.51) and ess > 20  # of 4 × 50 draws
    for name in ("nuts", "guide"):
        assert (tmp_path / f"posterior_summary_{name}.csv").read_text().startswith(",mean,sd")


@pytest.mark.slow  # two NUTS chains: about 10 s on one thread
def test_nuts_recovers_the_exact_posterior_of_the_linear_gaussian_model():
    pyro.set_rng_seed(0)
    model = LinearGaussian.from_params(CORRELATED_W, torch.zeros(6), X_SCALE)
    x = model.sample(3)
    z = nuts(model, x, num_samples=100, warmup=60, chains=2)  # (chains, draws, points, z_dim)
    exact = model.exact_posterior(x)
    draws = z.flatten(0, 1)
    sd = exact.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
    # 200 draws a point: a mean's Monte Carlo standard error is about 0.071 sd, and this is 5 of them
    assert ((draws.mean(0) - exact.mean).abs() / sd).max() < 0.36
    # the posterior covariance is the same for every x: pool the centred draws of the points (600,
    # a variance's relative standard error about sqrt(2/600) = 0.058: four of them)
    pooled = torch.cov((draws - draws.mean(0)).reshape(-1, 2).T)
    assert torch.allclose(pooled, exact.covariance_matrix[0], rtol=0.23, atol=0.02)


def test_nuts_chains_are_independent_runs_each_with_its_own_adaptation(monkeypatch):
    """Each chain is a NUTS run of its own on the points as they are (not the points entered
    twice into one run, whose copies would share step size, mass matrix and acceptance)."""
    kernels = []

    class Recorded(posterior.MCMC):
        def run(self, *args, **kwargs):
            assert self.num_chains == 1 and torch.equal(args[0], x)
            kernels.append(self.kernel)
            return super().run(*args, **kwargs)

    monkeypatch.setattr(posterior, "MCMC", Recorded)
    model = LinearGaussian.from_params(CORRELATED_W, torch.zeros(6), X_SCALE)
    x = model.sample(3)
    z = posterior.nuts(model, x, num_samples=5, warmup=15, chains=3)
    assert z.shape == (3, 5, 3, 2)
    assert len({id(k) for k in kernels}) == 3 and len({k.step_size for k in kernels}) == 3  # adapted apart
