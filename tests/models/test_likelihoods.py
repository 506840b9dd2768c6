"""Each likelihood's log_prob against its textbook formula, and its support check."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from models import Bernoulli, Beta, ContinuousBernoulli, DiscretizedLogisticLikelihood, Gaussian, Laplace, NegativeBinomial, Poisson
from models.distributions import DiscretizedLogistic

B, D = 5, 7


def test_bernoulli_log_prob_is_the_textbook_formula():
    x_logits = torch.randn(B, D)
    x = torch.randint(0, 2, (B, D)).float()
    p = torch.sigmoid(x_logits.double())
    expected = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    log_prob = Bernoulli()(x_logits).log_prob(x)
    assert log_prob.shape == (B,)
    assert torch.allclose(log_prob.double(), expected, atol=1e-5)


def continuous_bernoulli_log_norm(lam: float) -> float:
    """log C(λ) with C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ), and C(1/2) = 2 (Loaiza-Ganem & Cunningham, eq. 7)."""
    return math.log(2.0) if abs(lam - 0.5) < 1e-9 else math.log(2 * math.atanh(1 - 2 * lam) / (1 - 2 * lam))


def test_continuous_bernoulli_is_the_textbook_formula_and_normalized():
    x_logits = torch.tensor([[-3.0, -0.5, 0.0, 0.2, 4.0]], dtype=torch.float64)
    x = torch.tensor([[0.1, 0.9, 0.5, 0.0, 1.0]], dtype=torch.float64)
    lam = torch.sigmoid(x_logits)
    log_norm = torch.tensor([[continuous_bernoulli_log_norm(v) for v in lam[0].tolist()]], dtype=torch.float64)
    expected = (x * lam.log() + (1 - x) * (1 - lam).log() + log_norm).sum(-1)
    assert torch.allclose(ContinuousBernoulli(logit_bound=None)(x_logits).log_prob(x), expected, atol=1e-6)
    assert torch.allclose(ContinuousBernoulli(exact=False, logit_bound=None)(x_logits).log_prob(x), expected, atol=1e-6)
    # the normalizer by quadrature: ∫₀¹ λ^x (1−λ)^(1−x) dx = 1 / C(λ)
    for v in lam[0].tolist():
        area, _ = integrate.quad(lambda t, v=v: v**t * (1 - v) ** (1 - t), 0, 1)
        assert math.isclose(-math.log(area), continuous_bernoulli_log_norm(v), rel_tol=1e-8)


@pytest.mark.parametrize("family", [Gaussian, Laplace])
@pytest.mark.parametrize("scale_mode", ["fixed", "shared", "decoder"])
def test_location_scale_likelihoods_are_the_textbook_formulas(family, scale_mode):
    likelihood = family(scale=0.7, scale_mode=scale_mode)
    x_loc, raw_scale, x = torch.randn(B, D), torch.randn(B, D), torch.randn(B, D)
    if scale_mode == "decoder":
        scale = torch.nn.functional.softplus(raw_scale) + 1e-3
        log_prob = likelihood(torch.cat([x_loc, raw_scale], -1)).log_prob(x)
    else:
        scale = torch.full((B, D), 0.7)
        log_prob = likelihood(x_loc).log_prob(x)
    if family is Gaussian:
        expected = -0.5 * ((x - x_loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)
    else:
        expected = -(x - x_loc).abs() / scale - (2 * scale).log()
    assert likelihood.params_per_dim == (2 if scale_mode == "decoder" else 1)
    assert torch.allclose(log_prob, expected.sum(-1), atol=1e-5)
    learned = [n for n, _ in likelihood.named_parameters()]
    assert learned == (["log_scale"] if scale_mode == "shared" else [])


def test_beta_is_the_textbook_formula():
    raw_a, raw_b = torch.randn(B, D), torch.randn(B, D)
    x = torch.rand(B, D) * 0.98 + 0.01
    a, b = (torch.nn.functional.softplus(r) + 1e-2 for r in (raw_a, raw_b))
    log_beta_fn = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
    expected = ((a - 1) * x.log() + (b - 1) * (1 - x).log() - log_beta_fn).sum(-1)
    assert torch.allclose(Beta()(torch.cat([raw_a, raw_b], -1)).log_prob(x), expected, atol=1e-4)


def logistic_cdf(t):
    return 1 / (1 + math.exp(-t))


@pytest.mark.parametrize("mixtures", [1, 3])
def test_discretized_logistic_is_the_textbook_formula(mixtures):
    P = 2 if mixtures == 1 else 3 * mixtures
    out = torch.randn(1, P, dtype=torch.float64)  # one dimension
    likelihood = DiscretizedLogisticLikelihood(num_bins=256, mixtures=mixtures)
    for k in (0, 1, 77, 254, 255):
        x = torch.tensor([[k / 255]], dtype=torch.float64)
        if mixtures == 1:
            weights, locs, log_scales = [1.0], [out[0, 0].item()], [max(out[0, 1].item(), -7.0)]
        else:
            logits, locs, log_scales = out[0, 0::3], out[0, 1::3].tolist(), out[0, 2::3].clamp(min=-7.0).tolist()
            weights = torch.softmax(logits, 0).tolist()
        mass = 0.0
        for w, m, ls in zip(weights, locs, log_scales):
            s = math.exp(ls)
            upper = 1.0 if k == 255 else logistic_cdf((x.item() + 0.5 / 255 - m) / s)
            lower = 0.0 if k == 0 else logistic_cdf((x.item() - 0.5 / 255 - m) / s)
            mass += w * (upper - lower)
        assert math.isclose(likelihood(out).log_prob(x).item(), math.log(mass), rel_tol=1e-6)


@pytest.mark.parametrize("num_bins", [2, 17, 256])
def test_discretized_logistic_sums_to_one(num_bins):
    loc, log_scale, logits = torch.rand(4, 3), torch.randn(4, 3) - 3, torch.randn(4, 3)
    d = DiscretizedLogistic(loc, log_scale, logits, num_bins=num_bins)
    values = (torch.arange(num_bins) / (num_bins - 1)).reshape(-1, 1).expand(num_bins, 4)
    total = d.log_prob(values).exp().sum(0)
    assert torch.allclose(total, torch.ones(4), atol=1e-5)
    assert d.sample((100,)).shape == (100, 4)


def test_poisson_is_scipys():
    torch.manual_seed(0)
    out = torch.randn(B, D) * 2
    x = torch.poisson(out.exp())
    expected = stats.poisson.logpmf(x.numpy(), out.exp().numpy()).sum(-1)
    assert np.allclose(Poisson()(out).log_prob(x).numpy(), expected, rtol=1e-5, atol=1e-4)


def test_negative_binomial_is_scipys_with_a_dispersion_per_dimension():
    torch.manual_seed(0)
    likelihood = NegativeBinomial(x_dim=D, dispersion=2.0)
    with torch.no_grad():
        likelihood.log_dispersion.copy_(torch.linspace(-1.0, 2.0, D))  # θ from 0.37 to 7.4
    out = torch.randn(B, D) * 2
    mean, theta = out.exp().numpy(), likelihood.log_dispersion.exp().detach().numpy()
    x = torch.tensor(stats.nbinom.rvs(theta, theta / (theta + mean), random_state=np.random.default_rng(0)), dtype=torch.float32)
    expected = stats.nbinom.logpmf(x.numpy(), theta, theta / (theta + mean)).sum(-1)  # scipy's n, p: mean n(1 − p)/p
    d = likelihood(out)
    assert np.allclose(d.log_prob(x).detach().numpy(), expected, rtol=1e-5, atol=1e-3)
    assert np.allclose(d.mean.detach().numpy(), mean, rtol=1e-5)  # the decoder's output is the log-mean
    assert np.allclose(d.variance.detach().numpy(), mean + mean**2 / theta, rtol=1e-4)


SUPPORT_ERRORS = [
    (Bernoulli(), torch.tensor([[0.0, 0.25, 1.0]]), "Bernoulli likelihood needs binary data in {0, 1}", "data.binarize=dynamic"),
    (ContinuousBernoulli(), torch.tensor([[-0.5, 0.5]]), "ContinuousBernoulli likelihood needs data in [0, 1]", "likelihood=gaussian"),
    (Beta(), torch.tensor([[0.0, 0.5, 1.0]]), "Beta likelihood needs data strictly inside (0, 1)", "data.dequantize=true"),
    (DiscretizedLogisticLikelihood(), torch.tensor([[0.5001, 0.3]]), "DiscretizedLogistic likelihood needs values on the 256 levels k/255", "likelihood.num_bins"),
    (Poisson(), torch.tensor([[0.0, 2.5, 3.0]]), "Poisson likelihood needs counts, non-negative integers", "likelihood=gaussian"),
    (NegativeBinomial(x_dim=3), torch.tensor([[-1.0, 2.0, 3.0]]), "NegativeBinomial likelihood needs counts, non-negative integers", "likelihood=gaussian"),
]


@pytest.mark.parametrize("likelihood, x, needs, fix", SUPPORT_ERRORS, ids=lambda v: type(v).__name__ if hasattr(v, "forward") else "")
def test_data_outside_the_support_is_refused_with_the_range_and_the_fix(likelihood, x, needs, fix):
    with pytest.raises(ValueError) as error:
        likelihood.check_support(x)
    message = str(error.value)
    assert needs in message and fix in message
    assert f"[{x.min().item():.4g}, {x.max().item():.4g}]" in message


@pytest.mark.parametrize("likelihood", [Bernoulli(), Gaussian(), Beta(), DiscretizedLogisticLikelihood()], ids=["bernoulli", "gaussian", "beta", "dlogistic"])
def test_nan_in_data_is_refused(likelihood):
    with pytest.raises(ValueError, match="1 NaN or infinite values"):
        likelihood.check_support(torch.tensor([[0.5, float("nan")]]))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="scale and scale_floor must be positive, got 0"):
        Gaussian(scale=0.0)
    with pytest.raises(ValueError, match="scale_mode must be one of"):
        Laplace(scale_mode="learned")
    with pytest.raises(ValueError, match="likelihood.dispersion must be a positive number, got 0"):
        NegativeBinomial(x_dim=3, dispersion=0)


def test_the_exact_continuous_bernoulli_reads_saturated_pixels_as_float64_does():
    """likelihood.exact=true, the default: at the pendulum decoder's background (l = −23.7) a
    float32 pixel gets its float64 log-density; torch's form (exact=false) reads it 0.4 nats low."""
    logits, x = torch.full((1, 4), -23.7), torch.tensor([[0.0, 0.01, 0.05, 0.3]])
    exact = ContinuousBernoulli(logit_bound=None)(logits.double()).log_prob(x.double())
    assert ContinuousBernoulli(logit_bound=None)(logits).log_prob(x).double().item() == pytest.approx(exact.item(), abs=1e-4)
    assert ContinuousBernoulli(exact=False, logit_bound=None)(logits).log_prob(x).double().item() < exact.item() - 1.0  # 4 pixels, 0.4 nats each
    with pytest.raises(ValueError, match="likelihood.exact must be true or false"):
        ContinuousBernoulli(exact="yes")


@pytest.mark.parametrize("bound", [4.0, 16.0, 60.0])
def test_the_bounded_continuous_bernoulli_is_a_density_on_its_bounded_logits(bound):
    """likelihood.logit_bound=b: the logits are b·tanh(o/b) of the decoder's outputs o, so that
    however far o runs, the density is the continuous Bernoulli's at a logit inside (−b, b),
    computed in float32 as float64 computes it, and it integrates to 1 over [0, 1]."""
    outputs = torch.tensor([[-1e4, -3 * bound, -bound, -1.0, 0.0, 0.5, bound, 1e4]])
    likelihood = ContinuousBernoulli(logit_bound=bound)
    logits = likelihood(outputs).base_dist.logits
    assert (logits.abs() <= bound).all() and torch.allclose(logits, bound * torch.tanh(outputs / bound))
    assert logits[0, 3].item() == pytest.approx(-1.0, abs=2 / bound**2)  # the identity where |o| ≪ b
    grid = torch.linspace(0, 1, 2001)[:, None].expand(-1, outputs.shape[1])
    density32 = ContinuousBernoulli(logit_bound=None).forward(logits).base_dist.log_prob(grid)
    density64 = ContinuousBernoulli(logit_bound=None).forward(logits.double()).base_dist.log_prob(grid.double())
    assert torch.allclose(density32.double(), density64, rtol=1e-5, atol=1e-5)
    mass = integrate.simpson(density64.exp().numpy(), x=grid[:, 0].double().numpy(), axis=0)
    assert mass == pytest.approx(np.ones(outputs.shape[1]), abs=1e-4)
    for bad in (0, -1.0, "big", True):
        with pytest.raises(ValueError, match="likelihood.logit_bound must be a positive number or null"):
            ContinuousBernoulli(logit_bound=bad)


