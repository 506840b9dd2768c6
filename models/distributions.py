"""Distributions that Pyro and torch do not ship: the discretized logistic (mixture), a
Bernoulli whose log-probability takes fewer passes over memory, and a continuous Bernoulli
computed from its logits, exact where torch's saturates."""

import math

import torch
import torch.nn.functional as F
from torch.distributions import constraints

import pyro.distributions as dist
from pyro.distributions import TorchDistribution

__all__ = ["LogitBernoulli", "LogitBernoulliEvents", "LogitContinuousBernoulli", "DiscretizedLogistic", "DiagonalNormalMixture", "diagonal_normal_params", "diagonal_normal"]


class LogitBernoulli(dist.Bernoulli):
    """Bernoulli(logits) with log p(x) = x·l − softplus(l): the same numbers as torch's
    ``binary_cross_entropy_with_logits`` in three elementwise passes instead of about seven.
    The likelihood is the hottest computation of importance sampling."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return value * self.logits - F.softplus(self.logits)

    def expand(self, batch_shape, _instance=None):
        return super().expand(batch_shape, _instance or self._get_checked_instance(LogitBernoulli, _instance))

    def to_event(self, reinterpreted_batch_ndims=None):
        independent = super().to_event(reinterpreted_batch_ndims)
        if isinstance(independent, dist.Independent) and independent.base_dist is self:
            return LogitBernoulliEvents(self, independent.reinterpreted_batch_ndims)
        return independent


class LogitBernoulliEvents(dist.Independent):
    """``LogitBernoulli(logits).to_event(n)``, whose log-probability sums before it negates:
    log p(x) = −Σ_d softplus(l_d·(1 − 2x_d)), which for binary x is Σ_d x_d·l_d − softplus(l_d).
    Two passes over the logits (a product, a softplus) instead of three, and the negation on the
    sum, in the estimator's hottest computation. Exact on the support {0, 1} only, which the likelihood checks up front."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self.base_dist._validate_sample(value)
        flipped = self.base_dist.logits * (1 - 2 * value)  # l where x = 0, −l where x = 1
        return -F.softplus(flipped).flatten(-self.reinterpreted_batch_ndims).sum(-1)


# |logit| under which the closed forms below lose digits to cancellation, and their Taylor series take over
_NEAR_HALF = 1e-2


class LogitContinuousBernoulli(dist.ContinuousBernoulli):
    """CB(logits = l) (Loaiza-Ganem & Cunningham 2019) with its density, mean, variance and
    draws written in l:

        log p(x) = x·l + log(l / (e^l − 1)),   E[x] = 1/(1 − e^−l) − 1/l,   x = log(1 + u·(e^l − 1)) / l.

    torch's ``ContinuousBernoulli`` computes them from the probability sigmoid(l), which float32
    rounds to 0 or 1 beyond |l| ≈ 16, where torch clamps it, so that its log-density and mean are
    wrong there. A decoder that draws a crisp background has most of its pixels there, and the
    error adds up over them. The forms in l are exact to rounding at any l, and need no
    sigmoid."""

    def _split(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The logits; where they are near 0 (the Taylor series' side); and the logits with 1 put
        there, for the closed forms, whose gradient would be NaN at l = 0 even where unused."""
        logits = self.logits
        near_half = logits.abs() < _NEAR_HALF
        return logits, near_half, torch.where(near_half, torch.ones_like(logits), logits)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits, near_half, far = self._split()
        size = far.abs()
        # log(l / (e^l − 1)) = log|l| − log(1 − e^−|l|) − max(l, 0), whose terms overflow nowhere
        log_norm = size.log() - torch.log(-torch.expm1(-size)) - far.clamp_min(0)
        return value * logits + torch.where(near_half, -logits / 2 - logits**2 / 24, log_norm)

    @property
    def mean(self) -> torch.Tensor:
        logits, near_half, far = self._split()
        return torch.where(near_half, 0.5 + logits / 12, 1 / -torch.expm1(-far) - 1 / far)

    @property
    def variance(self) -> torch.Tensor:
        logits, near_half, far = self._split()
        return torch.where(near_half, 1 / 12 - logits**2 / 240, far.pow(-2) - 0.25 / torch.sinh(far / 2).pow(2))

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        # drawn as the mirror image of CB(−|l|), whose e^−|l| − 1 cannot overflow
        logits, near_half, far = self._split()
        size = far.abs()
        mirrored = torch.where(logits > 0, 1 - value, value)
        below_half = torch.where(near_half, mirrored, torch.log1p(mirrored * torch.expm1(-size)) / -size)
        return torch.where(logits > 0, 1 - below_half, below_half)

    def expand(self, batch_shape, _instance=None):
        return super().expand(batch_shape, _instance or self._get_checked_instance(LogitContinuousBernoulli, _instance))


def diagonal_normal_params(params: torch.Tensor, scale_floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a network's ``(..., 2·z_dim)`` output into ``z_loc`` and ``z_scale``.

    The scale is softplus plus a floor: smooth, and never so close to zero that log q(z|x)
    runs off to infinity and turns the ELBO into NaN.
    """
    z_loc, z_raw_scale = params.chunk(2, dim=-1)
    return z_loc, F.softplus(z_raw_scale) + scale_floor


def diagonal_normal(params: torch.Tensor, scale_floor: float) -> dist.TorchDistribution:
    """N(z_loc, diag z_scale²) with event dim 1, from a network's ``(..., 2·z_dim)`` output."""
    z_loc, z_scale = diagonal_normal_params(params, scale_floor)
    return dist.Normal(z_loc, z_scale, validate_args=False).to_event(1)


class DiscretizedLogistic(TorchDistribution):
    """A mixture of logistics discretized into ``num_bins`` equal bins on [0, 1]
    (Salimans et al. 2017, PixelCNN++, eq. 2; Kingma et al. 2016 for one component).

    The values are the bin centres k / (num_bins − 1), k = 0 … num_bins − 1. The mass of bin k is
    the logistic CDF between the bin's edges, with the first and last bins taking the tails, so
    the masses of all bins sum to one exactly.

    :param loc: component locations, shape ``batch_shape + (M,)``.
    :param log_scale: component log scales, the same shape.
    :param logits: component weights, the same shape; ``None`` for a single component (M = 1).
    :param int num_bins: 256 for 8-bit data.
    """

    arg_constraints = {"loc": constraints.real, "log_scale": constraints.real}
    support = constraints.unit_interval
    has_rsample = False

    def __init__(self, loc, log_scale, logits=None, num_bins: int = 256, validate_args=None):
        if logits is None:
            logits = torch.zeros_like(loc)
        self.loc, self.log_scale, self.logits = torch.broadcast_tensors(loc, log_scale, logits)
        self.num_bins = num_bins
        super().__init__(batch_shape=self.loc.shape[:-1], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape) + self.loc.shape[-1:]
        return DiscretizedLogistic(self.loc.expand(shape), self.log_scale.expand(shape), self.logits.expand(shape), self.num_bins)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        x = value.unsqueeze(-1)  # against every component
        half_bin = 0.5 / (self.num_bins - 1)
        inv_scale = torch.exp(-self.log_scale)
        upper = inv_scale * (x - self.loc + half_bin)
        lower = inv_scale * (x - self.loc - half_bin)
        log_cdf_upper = -F.softplus(-upper)  # log σ(upper): the first bin's mass, from −∞
        log_survival_lower = -F.softplus(lower)  # log (1 − σ(lower)): the last bin's, to +∞
        # log(σ(upper) − σ(lower)) = log σ(upper) + log1p(−σ(lower)/σ(upper)), stable as upper > lower;
        # the clamp keeps a bin far out in a tiny-scale tail finite instead of −inf.
        log_cdf_lower = -F.softplus(-lower)
        log_mid = log_cdf_upper + torch.log1p(-torch.exp(log_cdf_lower - log_cdf_upper).clamp(max=1 - 1e-7))
        log_bin = torch.where(
            x <= half_bin, log_cdf_upper, torch.where(x >= 1 - half_bin, log_survival_lower, log_mid)
        )
        return torch.logsumexp(F.log_softmax(self.logits, -1) + log_bin, -1)

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.loc.shape
        component = torch.distributions.Categorical(logits=self.logits).sample(sample_shape).unsqueeze(-1)
        loc = self.loc.expand(shape).gather(-1, component).squeeze(-1)
        log_scale = self.log_scale.expand(shape).gather(-1, component).squeeze(-1)
        u = torch.rand_like(loc).clamp(1e-6, 1 - 1e-6)
        continuous = loc + log_scale.exp() * (torch.log(u) - torch.log1p(-u))  # a logistic draw
        k = torch.round(continuous * (self.num_bins - 1)).clamp(0, self.num_bins - 1)
        return k / (self.num_bins - 1)


class DiagonalNormalMixture(TorchDistribution):
    """Σ_k π_k N(z; μ_k, diag σ_k²): one set of K components shared by every batch element.

    ``log_prob`` computes all K component densities with two matrix products,
    Σ_d (z_d − μ_kd)²/σ_kd² = z²·(1/σ²)ᵀ − 2 z·(μ/σ²)ᵀ + Σ_d μ_kd²/σ_kd², instead of broadcasting
    a ``(..., K, D)`` tensor, whose size grows with components × particles × dimensions (the
    VampPrior's hundreds of components at thousands of particles). The products run in float64, because the expansion subtracts
    large terms when scales are small.

    :param logits: ``(K,)`` unnormalized log mixture weights.
    :param locs: ``(K, D)`` component locations.
    :param scales: ``(K, D)`` component scales.
    """

    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, logits, locs, scales, batch_shape=torch.Size(), validate_args=None):
        self.logits, self.locs, self.scales = logits, locs, scales
        super().__init__(torch.Size(batch_shape), locs.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return DiagonalNormalMixture(self.logits, self.locs, self.scales, batch_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        D = value.shape[-1]
        z = value.reshape(-1, D).double()  # (M, D)
        precision = self.scales.double() ** -2  # (K, D)
        locs = self.locs.double()
        squared = (z**2) @ precision.T - 2 * z @ (locs * precision).T + (locs**2 * precision).sum(-1)  # (M, K)
        log_components = -0.5 * squared - self.scales.double().log().sum(-1) - 0.5 * D * math.log(2 * math.pi)
        log_weights = F.log_softmax(self.logits.double(), -1)
        return torch.logsumexp(log_components + log_weights, -1).to(value.dtype).reshape(value.shape[:-1])

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        k = torch.distributions.Categorical(logits=self.logits).sample(shape)  # component of each draw
        return self.locs[k] + self.scales[k] * torch.randn(*shape, self.locs.shape[-1], device=self.locs.device)
