"""The hand-written references of bench/ compute what the suite computes, so that the ratios in
BENCHMARKS.md compare like with like."""

import math

import pyro
import torch

from bench.common import binary_data, make_vae
from bench.estimator import handwritten_log_px
from bench.handwritten_vae import HandVAE, train_budgeted
from bench.train_step import handwritten_loss
from inference.estimators import importance_sampling
from inference.training.objectives import LeanTrace_ELBO


def test_the_handwritten_estimator_estimates_the_suites_log_px():
    pyro.set_rng_seed(0)
    model, guide = make_vae(16, [32], 3, "Tanh")
    model.eval(), guide.eval()
    x = binary_data(40, 16)
    suite = importance_sampling(model, guide, x, 2000, chunk_size=5000, seed=1).log_px
    hand = handwritten_log_px(model, guide, x, 2000, chunk_size=5000)
    difference = suite - hand  # the points' true values cancel; what is left is Monte Carlo error
    assert abs(difference.mean()) < 4 * difference.std() / math.sqrt(len(x)) + 1e-3


def test_the_handwritten_training_loss_is_the_suites():
    """From the same random numbers, the hand-written step's loss and the suite's objective agree."""
    model, guide = make_vae(16, [32], 3, "Tanh")
    x = binary_data(8, 16)
    pyro.set_rng_seed(2)
    hand = handwritten_loss(model, guide, x)
    pyro.set_rng_seed(2)
    with pyro.validation_enabled(False):  # the objective as training runs use it
        suite = LeanTrace_ELBO().differentiable_loss(model, guide, x)
    assert torch.allclose(hand, suite, rtol=1e-5)


def test_the_handwritten_preset_trains_a_given_number_of_epochs():
    pyro.set_rng_seed(0)
    model = HandVAE(x_dim=16, hidden=(8,), z_dim=2)
    epochs, seconds = train_budgeted(model, torch.rand(30, 16), lr=1e-3, batch_size=10, max_epochs=3)
    assert epochs == 3 and seconds > 0


def test_slices_pool_into_the_mean_and_standard_error_of_all_points():
    from bench.end_to_end import pooled
    from inference.estimators.metrics import mean_and_stderr

    values = torch.randn(103, generator=torch.Generator().manual_seed(0)) * 3 - 90
    mean, stderr = pooled([mean_and_stderr(part) for part in values.split(25)])
    whole = mean_and_stderr(values)
    assert math.isclose(mean, whole["mean"], rel_tol=1e-6) and math.isclose(stderr, whole["stderr"], rel_tol=1e-4)
