"""Annealed importance sampling against the closed form, and bidirectional Monte Carlo on data
simulated from a small trained VAE."""

import importlib
import math

import pyro
import pytest
import torch

from conftest import CORRELATED_W, SMALL_NETS, TINY, X_SCALE, checkpoint_programs, compose_config
from inference.estimators.ais import ais, bidirectional, sigmoid_schedule
from inference.estimators import importance_sampling
from inference.runs import train
import user_programs
from models import LinearGaussian

ais_module = importlib.import_module("inference.estimators.ais")  # the package's `ais` is the function


def paired(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Mean of a − b and its standard error over the points."""
    d = a - b
    return d.mean().item(), d.std().item() / math.sqrt(d.numel())


def test_the_schedule_runs_from_zero_to_one():
    betas = sigmoid_schedule(50)
    assert betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all() and len(betas) == 51


def test_ais_matches_the_exact_log_px_of_the_linear_gaussian_model():
    model = LinearGaussian.from_params(CORRELATED_W, torch.zeros(6), X_SCALE)
    x = model.sample(40)
    estimate = ais(model, x, steps=200, leapfrog=5, step_size=0.1, chains=16)
    bias, stderr = paired(estimate.log_px, model.exact_log_px(x))
    assert abs(bias) < 3 * stderr + 0.01, (bias, stderr)
    assert 0.5 < estimate.acceptance < 1


def test_reverse_ais_from_exact_posterior_samples_bounds_the_exact_log_px_from_above():
    model = LinearGaussian.from_params(CORRELATED_W, torch.zeros(6), X_SCALE)
    x = model.sample(40)
    upper = ais(model, x, steps=20, leapfrog=5, step_size=0.1, chains=16, reverse_from=model.exact_posterior(x).sample())
    gap, stderr = paired(upper.log_px, model.exact_log_px(x))
    assert gap > -3 * stderr


def test_bdmc_brackets_log_px_and_narrows_with_more_steps(tmp_path):
    cfg = compose_config(*TINY, *SMALL_NETS, "train.epochs=5", "z_dim=2")
    train(cfg, tmp_path)
    data, model, guide = checkpoint_programs(cfg, tmp_path)
    widths = []
    for steps in (5, 100):
        pyro.set_rng_seed(1)  # the same simulated points for both
        sandwich = bidirectional(model, data.test, 30, steps=steps, leapfrog=5, step_size=0.1, chains=8)
        width, stderr = paired(sandwich["upper"], sandwich["lower"])
        assert width > -3 * stderr
        importance = importance_sampling(model, guide, sandwich["x"], num_particles=1000).log_px
        above, stderr = paired(sandwich["upper"], importance)
        assert above > -3 * stderr
        widths.append(width)
    assert widths[1] < widths[0] / 2, widths


@pytest.mark.slow  # 4.7 to 6.2 s in make test's durations
def test_ais_on_a_program_whose_latent_is_split_in_two_sites_matches_the_exact_log_px():
    """user_programs.split_latent_model: x ~ N(W [a; b] + bias, noise² I), a, b ~ N(0, 1), so that
    p(x) = N(bias, W Wᵀ + noise² I); its sites are "a" and "b", not "z"."""
    pyro.param("noise", torch.tensor(X_SCALE)), pyro.param("bias", torch.zeros(user_programs.X_DIM))
    W = user_programs.W
    exact = torch.distributions.MultivariateNormal(torch.zeros(user_programs.X_DIM), W @ W.T + X_SCALE**2 * torch.eye(user_programs.X_DIM))
    x = exact.sample((40,))
    estimate = ais(user_programs.split_latent_model, x, steps=200, leapfrog=5, step_size=0.1, chains=16)
    bias, stderr = paired(estimate.log_px, exact.log_prob(x))
    assert abs(bias) < 3 * stderr + 0.01, (bias, stderr)


def test_a_model_with_two_latent_layers_runs_ais_and_bdmc(tmp_path):
    overrides = [*TINY, "model=hierarchical", "guide=hierarchical", "evaluation.ais=true", "evaluation.ais_points=4", "evaluation.ais_steps=2"]
    test = train(compose_config(*overrides), tmp_path)["test"]
    assert math.isfinite(test["log_px_ais"]["mean"]) and math.isfinite(test["bdmc"]["width"]["mean"])


def test_the_reported_runs_move_with_step_sizes_fixed_before_them(monkeypatch):
    """The forward run moves at β_t with the schedule's step size for β_t, the reverse run at
    β_{t−1} with that for β_{t−1}, whatever their own acceptance: their draws do not choose their
    transitions (which would void the bounds). Without a schedule, a pilot adapts one first."""
    model = LinearGaussian.from_params(CORRELATED_W, torch.zeros(6), X_SCALE)
    x = model.sample(3)
    used, hmc = [], ais_module._hmc
    monkeypatch.setattr(ais_module, "_hmc", lambda path, z, beta, eps, leapfrog: used.append(eps.clone()) or hmc(path, z, beta, eps, leapfrog))
    schedule = 0.01 * torch.arange(1.0, 7.0)[:, None].expand(6, 3)  # T = 5: one step size per β_t and point
    ais(model, x, steps=5, leapfrog=2, chains=4, step_sizes=schedule)
    assert torch.equal(torch.stack(used), schedule[1:])
    used.clear()
    ais(model, x, steps=5, leapfrog=2, chains=4, step_sizes=schedule, reverse_from=model.exact_posterior(x).sample())
    assert torch.equal(torch.stack(used), schedule[:-1].flip(0))

    used.clear()
    pyro.set_rng_seed(3)
    ais(model, x, steps=5, leapfrog=2, step_size=0.1, chains=8)
    pilot, reported = torch.stack(used[:5]), torch.stack(used[5:])
    assert torch.equal(reported, pilot)  # the pilot's schedule, frozen
    assert not torch.equal(pilot[0], pilot[-1])  # which the pilot did adapt


def test_bdmc_brackets_the_exact_log_px_of_the_linear_gaussian_model():
    """On points simulated from the model, the mean forward AIS lies at or below the exact mean
    log p(x) and the mean reverse AIS at or above it, each within two standard errors of the
    difference (few steps, so that the bounds are loose and the test can tell)."""
    model = LinearGaussian.from_params(CORRELATED_W, torch.zeros(6), X_SCALE)
    pyro.set_rng_seed(4)
    sandwich = bidirectional(model, torch.zeros(60, 6), 60, steps=5, leapfrog=3, step_size=0.2, chains=8)
    exact = model.exact_log_px(sandwich["x"])
    below, stderr_below = paired(sandwich["lower"], exact)
    above, stderr_above = paired(sandwich["upper"], exact)
    assert below < 2 * stderr_below and above > -2 * stderr_above, (below, stderr_below, above, stderr_above)
    assert above - below > 2 * math.hypot(stderr_below, stderr_above)  # loose enough to tell the sides apart
