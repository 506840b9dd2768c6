"""Every prior × likelihood pair, each prior and each likelihood with both networks, trains a few
steps on the digits.

Each must give a finite ELBO, a mean log p̂(x) at or above an independent ELBO estimate (up to
Monte Carlo error), and samples with the data's shape inside the likelihood's support.
"""

import math

import pytest

from conftest import CONF, TINY, checkpoint_programs, compose_config
from inference.estimators import importance_sampling
from inference.runs import train

PRIORS = sorted(p.stem for p in (CONF / "prior").glob("*.yaml"))
# likelihood=auto chooses one of the others from the data (the Bernoulli on the binarized digits): tests/inference/data/test_files.py
LIKELIHOODS = sorted(p.stem for p in (CONF / "likelihood").glob("*.yaml") if p.stem != "auto")
NETWORKS = ["mlp", "conv"]

# What makes the digits (17 gray levels) fit each likelihood.
FITS = {
    "bernoulli": ["data.binarize=fixed"],
    "continuous_bernoulli": ["data.binarize=none"],
    "gaussian": ["data.binarize=none"],
    "laplace": ["data.binarize=none"],
    "beta": ["data.binarize=none", "data.dequantize=true"],
    "discretized_logistic": ["data.binarize=none", "likelihood.num_bins=17", "likelihood.mixtures=2"],
    "poisson": ["data.binarize=fixed"],  # 0 and 1 are counts
    "negative_binomial": ["data.binarize=fixed"],
}
SIZES = {"vamp": ["prior.components=5"], "mixture": ["prior.components=3"], "flow": ["prior.layers=2", "prior.hidden=[16]"]}

# All pairs, not the full product: every prior × likelihood once, the network alternating so that
# every prior (the VampPrior's pseudo-inputs go through the encoder) and every likelihood (the
# decoder's output holds its parameters) meets both networks. No code couples all three: the prior
# sees z, the likelihood x.
COMBINATIONS = [(prior, likelihood, NETWORKS[(i + j) % 2]) for i, prior in enumerate(PRIORS) for j, likelihood in enumerate(LIKELIHOODS)]


def test_every_likelihood_has_a_fitting_transform():
    assert set(FITS) == set(LIKELIHOODS)


def test_the_combinations_meet_every_pair_of_options():
    pairs = {(a, b) for prior, likelihood, network in COMBINATIONS for a, b in ((prior, likelihood), (prior, network), (likelihood, network))}
    assert pairs >= {(a, b) for one, other in ((PRIORS, LIKELIHOODS), (PRIORS, NETWORKS), (LIKELIHOODS, NETWORKS)) for a in one for b in other}


@pytest.mark.parametrize(("prior", "likelihood", "network"), COMBINATIONS)
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

    data, model, guide = checkpoint_programs(cfg, tmp_path)  # the trained pair, against an independent ELBO
    x = data.test[:32]
    elbo = importance_sampling(model, guide, x, num_particles=1).elbo  # fresh draws
    log_px = importance_sampling(model, guide, x, num_particles=16).log_px
    difference = log_px - elbo
    assert difference.mean() >= -3 * difference.std() / math.sqrt(len(x))

    samples = model.sample(64)
    assert samples.shape == (64, data.x_dim)
    model.likelihood.check_support(samples)
