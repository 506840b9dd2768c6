"""Every fitting prior × likelihood × network combination trains a few steps on the digits.

Each must give a finite ELBO, a mean log p̂(x) at or above an independent ELBO estimate (up to
Monte Carlo error), and samples with the data's shape inside the likelihood's support.
"""

import math

import pytest
import torch

from conftest import CONF, TINY, compose_config
from inference.estimators import importance_sampling
from inference.runs import build, instantiate, train

PRIORS = sorted(p.stem for p in (CONF / "prior").glob("*.yaml"))
LIKELIHOODS = sorted(p.stem for p in (CONF / "likelihood").glob("*.yaml"))
NETWORKS = ["mlp", "conv"]

# What makes the digits (17 gray levels) fit each likelihood.
FITS = {
    "bernoulli": ["data.binarize=fixed"],
    "continuous_bernoulli": ["data.binarize=none"],
    "gaussian": ["data.binarize=none"],
    "laplace": ["data.binarize=none"],
    "beta": ["data.binarize=none", "data.dequantize=true"],
    "discretized_logistic": ["data.binarize=none", "likelihood.num_bins=17", "likelihood.mixtures=2"],
}
SIZES = {"vamp": ["prior.components=5"], "mixture": ["prior.components=3"], "flow": ["prior.layers=2", "prior.hidden=[16]"]}


def test_every_likelihood_has_a_fitting_transform():
    assert set(FITS) == set(LIKELIHOODS)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("prior", PRIORS)
def test_combination_trains_and_evaluates(prior, likelihood, network, tmp_path):
    overrides = [
        *TINY,
        "train.epochs=1",
        "train.batch_size=256",
        "evaluation.num_particles=16",
        "evaluation.splits=[test]",
        f"prior={prior}",
        f"likelihood={likelihood}",
        f"encoder={network}",
        f"decoder={network}",
        *FITS[likelihood],
        *SIZES.get(prior, []),
    ]
    if network == "mlp":
        overrides += ["encoder.hidden=[32]", "decoder.hidden=[32]"]
    cfg = compose_config(*overrides)
    metrics = train(cfg, tmp_path)["test"]
    assert math.isfinite(metrics["elbo"]) and math.isfinite(metrics["log_px"]["mean"])

    # rebuild the trained pair from the checkpoint, to check against an independent ELBO
    data = instantiate(cfg.data)
    model, guide = build(cfg, data)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    model.load_state_dict(state["model"]), guide.load_state_dict(state["guide"])
    x = data.test[:32]
    elbo = importance_sampling(model, guide, x, num_particles=1).elbo  # fresh draws
    log_px = importance_sampling(model, guide, x, num_particles=16).log_px
    difference = log_px - elbo
    assert difference.mean() >= -3 * difference.std() / math.sqrt(len(x))

    samples = model.sample(64)
    assert samples.shape == (64, data.x_dim)
    model.likelihood.check_support(samples)
