"""Each likelihood's log_prob against its textbook formula, and its support check."""

import math

import pytest
import torch

from models import Bernoulli, Gaussian


def test_bernoulli_log_prob_is_the_textbook_formula():
    x_logits = torch.randn(5, 7)
    x = torch.randint(0, 2, (5, 7)).float()
    p = torch.sigmoid(x_logits.double())
    expected = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    log_prob = Bernoulli()(x_logits).log_prob(x)
    assert log_prob.shape == (5,)
    assert torch.allclose(log_prob.double(), expected, atol=1e-5)


@pytest.mark.parametrize("learned", [True, False])
def test_gaussian_log_prob_is_the_textbook_formula(learned):
    likelihood = Gaussian(scale=0.7, learned=learned)
    x_loc, x = torch.randn(5, 7), torch.randn(5, 7)
    expected = (-0.5 * ((x - x_loc) / 0.7) ** 2 - math.log(0.7) - 0.5 * math.log(2 * math.pi)).sum(-1)
    assert torch.allclose(likelihood(x_loc).log_prob(x), expected, atol=1e-5)
    assert [n for n, _ in likelihood.named_parameters()] == (["log_scale"] if learned else [])


def test_bernoulli_refuses_gray_values_and_says_how_to_fix_it():
    with pytest.raises(ValueError) as error:
        Bernoulli().check_support(torch.tensor([[0.0, 0.25, 1.0]]))
    message = str(error.value)
    assert "Bernoulli likelihood needs binary data" in message
    assert "[0, 1]" in message  # the offending range
    assert "data.binarize=dynamic" in message and "likelihood=gaussian" in message  # the fix


@pytest.mark.parametrize("likelihood", [Bernoulli(), Gaussian()], ids=["bernoulli", "gaussian"])
def test_nan_in_data_is_refused(likelihood):
    with pytest.raises(ValueError, match="1 NaN or infinite values"):
        likelihood.check_support(torch.tensor([[0.0, float("nan")]]))


def test_gaussian_scale_must_be_positive():
    with pytest.raises(ValueError, match="scale must be positive, got 0"):
        Gaussian(scale=0.0)
