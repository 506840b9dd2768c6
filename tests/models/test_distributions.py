"""The Bernoulli with fused log-probabilities gives torch's numbers and gradients, extreme logits included;
the continuous Bernoulli in logits is torch's in float64, and stays exact in float32 where torch's saturates."""

import pyro.distributions as dist
import torch

import math

import pytest

from models.distributions import LogitBernoulli, LogitBernoulliEvents, LogitContinuousBernoulli


def test_logit_bernoulli_matches_torch_bernoulli_at_extreme_logits():
    logits = torch.tensor([[-80.0, -5.0, 0.0, 5.0, 80.0]]).expand(2, 5)
    x = torch.tensor([[0.0, 1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0, 0.0]])
    ours = LogitBernoulli(logits=logits).log_prob(x)
    assert torch.isfinite(ours).all()
    assert torch.allclose(ours, dist.Bernoulli(logits=logits).log_prob(x), atol=1e-6)
    assert isinstance(LogitBernoulli(logits=torch.zeros(3)).expand((4, 3)), LogitBernoulli)


def test_logit_bernoulli_events_sum_the_same_log_probabilities():
    torch.manual_seed(0)
    logits = torch.cat([torch.randn(4, 2, 6) * 3, torch.full((1, 2, 6), 80.0), torch.full((1, 2, 6), -80.0)])
    x = torch.randint(0, 2, (2, 6)).float()  # broadcast against the particles on the left
    for n in (1, 2):
        ours = LogitBernoulli(logits=logits).to_event(n)
        reference = dist.Bernoulli(logits=logits).to_event(n)
        assert ours.event_shape == reference.event_shape and ours.batch_shape == reference.batch_shape
        assert torch.allclose(ours.log_prob(x), reference.log_prob(x), atol=1e-4)
    expanded = LogitBernoulli(logits=torch.zeros(6)).to_event(1).expand((3,))
    assert isinstance(expanded, LogitBernoulliEvents) and expanded.batch_shape == (3,)
    assert isinstance(LogitBernoulli(logits=torch.zeros(6)).to_event(0), LogitBernoulli)


def test_logit_bernoulli_events_have_bernoullis_gradient():
    logits = torch.randn(3, 5, requires_grad=True)
    x = torch.randint(0, 2, (3, 5)).float()
    (ours,) = torch.autograd.grad(LogitBernoulli(logits=logits).to_event(1).log_prob(x).sum(), logits)
    assert torch.allclose(ours, x - torch.sigmoid(logits), atol=1e-6)  # d/dl [x·l − softplus(l)]


LOGITS = torch.tensor([-60.0, -23.7, -16.0, -5.0, -0.3, -1e-3, 0.0, 2e-3, 0.5, 7.0, 16.0, 23.7, 60.0])


def test_logit_continuous_bernoulli_is_torchs_in_float64_at_any_logit():
    """In float64, sigmoid(l) saturates only beyond |l| ≈ 36, so torch's forms are exact to
    rounding up to there (the Taylor window of each aside: torch's is |p − ½| < 10⁻³)."""
    logits = LOGITS[LOGITS.abs() < 30].double()
    x = torch.linspace(0, 1, 7, dtype=torch.float64)[:, None]
    ours, torchs = LogitContinuousBernoulli(logits=logits), dist.ContinuousBernoulli(logits=logits)
    assert torch.allclose(ours.log_prob(x), torchs.log_prob(x), atol=1e-6)
    assert torch.allclose(ours.mean, torchs.mean, atol=1e-6)
    assert torch.allclose(ours.variance, torchs.variance, atol=1e-6)
    u = torch.rand(5, len(logits), dtype=torch.float64)
    assert torch.allclose(ours.icdf(u), torchs.icdf(u), atol=1e-6)


def test_logit_continuous_bernoulli_in_float32_integrates_to_one_where_torchs_does_not():
    """The density of every logit, ±60 included, integrates to 1 over [0, 1] and its mean is
    ∫ x p(x) dx (Simpson's rule on 20001 points in float64, from the float32 densities); torch's
    float32 density at l = −23.7 (the pendulum decoder's background) integrates to exp(−0.4)."""
    x = torch.linspace(0, 1, 20001)
    weights = torch.ones(20001, dtype=torch.float64)
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    weights /= 3 * 20000

    def integral(values):  # (points, logits) → (logits,)
        return weights @ values.double()

    ours = LogitContinuousBernoulli(logits=LOGITS)
    density = ours.log_prob(x[:, None]).exp()
    assert integral(density) == pytest.approx(torch.ones(len(LOGITS), dtype=torch.float64), abs=2e-4)
    assert ours.mean.double() == pytest.approx(integral(x[:, None] * density), abs=1e-4)
    squared = integral(x[:, None] ** 2 * density) - ours.mean.double() ** 2
    assert ours.variance.double() == pytest.approx(squared, abs=1e-4)
    torchs = dist.ContinuousBernoulli(logits=torch.tensor([-23.7]), validate_args=False).log_prob(x[:, None]).exp()
    assert integral(torchs).item() == pytest.approx(math.exp(-0.4), abs=0.05)


def test_logit_continuous_bernoulli_draws_have_its_mean_and_finite_gradients():
    """Draws by the inverse CDF average to the mean within 4 standard errors at every logit
    (the ±60 ones included, where a draw computed from e^l would overflow), and the log-density
    has finite gradients at l = 0, the edge of its Taylor window."""
    torch.manual_seed(0)
    ours = LogitContinuousBernoulli(logits=LOGITS)
    draws = ours.rsample((20000,))
    assert torch.isfinite(draws).all() and ((draws >= 0) & (draws <= 1)).all()
    stderr = (ours.variance / 20000).sqrt()
    assert ((draws.mean(0) - ours.mean).abs() < 4 * stderr).all()
    logits = LOGITS.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(LogitContinuousBernoulli(logits=logits).log_prob(torch.full_like(logits, 0.3)).sum(), logits)
    assert torch.isfinite(gradient).all()
    # d/dl log p(x) = x − E[x]: the score's mean is zero
    assert gradient == pytest.approx(0.3 - LogitContinuousBernoulli(logits=LOGITS).mean, abs=1e-4)
    assert isinstance(ours.expand((2, len(LOGITS))), LogitContinuousBernoulli)
