"""Likelihoods p(x|z): map the decoder's output to a Pyro distribution over x.

Each likelihood states how many decoder outputs it needs per data dimension
(``params_per_dim``; the decoder's output is those blocks of ``x_dim`` side by side), whether it
is a distribution over discrete values (``discrete``: then log p(x) is a log probability and
converts to bits per dimension), and checks that the data lies in its support before any
training starts, so that a mismatch is a clear error rather than a silently wrong log p(x).
Data is flat, ``(..., x_dim)``, so every distribution has event dim 1.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

import pyro.distributions as dist

from .distributions import DiscretizedLogistic, LogitBernoulli, LogitContinuousBernoulli

__all__ = [
    "Likelihood",
    "Bernoulli",
    "ContinuousBernoulli",
    "Gaussian",
    "Laplace",
    "Beta",
    "DiscretizedLogisticLikelihood",
    "Poisson",
    "NegativeBinomial",
    "auto",
    "AUTO",
    "auto_choice",
]

SCALE_MODES = ("fixed", "shared", "decoder")
# The decoder's output is a log-rate (log-mean); clamped so that exp() stays finite in float32
# whatever the network outputs early in training (e^±30 spans any count a dataset holds).
LOG_RATE_BOUND = 30.0
DEFAULT_LOGIT_BOUND = 48.0  # the continuous Bernoulli's b (likelihood.logit_bound)


class Likelihood(nn.Module):
    """Base class: ``likelihood(decoder_output)`` returns a distribution over x.

    Subclasses set ``params_per_dim`` and ``discrete`` and implement :meth:`forward`; a
    subclass with a bounded support overrides :meth:`check_support`.
    """

    params_per_dim: int = 1
    discrete: bool = False

    def check_support(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the problem and the fix if ``x`` lies outside the support."""
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).sum().item()
            raise ValueError(f"{self._name} likelihood: the data holds {bad} NaN or infinite values; clean the data before training")

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _refuse(self, x: torch.Tensor, needs: str, fix: str) -> None:
        raise ValueError(
            f"{self._name} likelihood needs {needs}, but the data has values in "
            f"[{x.min().item():.4g}, {x.max().item():.4g}] that are not. {fix}"
        )


def _positive(raw: torch.Tensor, floor: float) -> torch.Tensor:
    # softplus plus a floor: smooth, and never so small that log p(x) runs off to infinity
    return F.softplus(raw) + floor


class Bernoulli(Likelihood):
    """x_d ~ Bernoulli(logits = decoder output), for binary data."""

    discrete = True

    def forward(self, x_logits: torch.Tensor) -> dist.TorchDistribution:
        # validate_args=False: check_support ran once, up front; checking each batch again is slow.
        return LogitBernoulli(logits=x_logits, validate_args=False).to_event(1)

    def check_support(self, x: torch.Tensor) -> None:
        super().check_support(x)
        if not ((x == 0) | (x == 1)).all():
            self._refuse(
                x,
                "binary data in {0, 1}",
                "Binarize the data (data.binarize=dynamic or data.binarize=fixed), or use a likelihood "
                "for gray values (likelihood=continuous_bernoulli, gaussian, beta or discretized_logistic)",
            )


class ContinuousBernoulli(Likelihood):
    """x_d ~ CB(logits = l_d) on [0, 1], with its normalizing constant (Loaiza-Ganem &
    Cunningham 2019): the proper likelihood for gray values in [0, 1].

    The logits are the decoder's outputs o_d bounded smoothly, l_d = b·tanh(o_d / b), for
    ``logit_bound`` b (the identity where |o_d| ≪ b). The bound is part of the model: on data
    with pixels at exactly 0 (or 1), the density there grows as log|l| without bound as l runs
    to −∞ (+∞), so an unbounded decoder can keep sharpening those pixels, and gains log p(x)
    while its mean image, which denoising and reconstructions use, moves towards 0. Training
    and evaluation use the same bounded density; ``logit_bound=None`` leaves the logits free.

    :param bool exact: compute the density from the logits
        (:class:`~models.distributions.LogitContinuousBernoulli`), exact to float32 rounding at
        any logit. ``False`` is torch's form, computed from the probability sigmoid(l), which
        float32 rounds to 0 or 1 beyond |l| ≈ 16 and which torch then clamps, so that its
        log-density is wrong there; kept so that runs trained with it re-evaluate as they were.
    :param float logit_bound: b above, a positive number, or None.
    """

    def __init__(self, exact: bool = True, logit_bound: float | None = DEFAULT_LOGIT_BOUND):
        super().__init__()
        if not isinstance(exact, bool):
            raise ValueError(f"likelihood.exact must be true or false, got {exact!r}")
        if logit_bound is not None and not (isinstance(logit_bound, (int, float)) and not isinstance(logit_bound, bool) and logit_bound > 0):
            raise ValueError(f"likelihood.logit_bound must be a positive number or null (no bound), got {logit_bound!r}")
        self.exact = exact
        self.logit_bound = None if logit_bound is None else float(logit_bound)

    def forward(self, x_logits: torch.Tensor) -> dist.TorchDistribution:
        if self.logit_bound is not None:
            x_logits = self.logit_bound * torch.tanh(x_logits / self.logit_bound)
        kind = LogitContinuousBernoulli if self.exact else dist.ContinuousBernoulli
        return kind(logits=x_logits, validate_args=False).to_event(1)

    def check_support(self, x: torch.Tensor) -> None:
        super().check_support(x)
        if not ((x >= 0) & (x <= 1)).all():
            self._refuse(x, "data in [0, 1]", "Use an image dataset scaled to [0, 1], or likelihood=gaussian for real values")


class _LocScale(Likelihood):
    """A location-scale family: loc from the decoder, the scale fixed, shared and learned, or
    per dimension from the decoder.

    :param float scale: the fixed scale, or the initial one when ``scale_mode="shared"``.
    :param str scale_mode: ``fixed``, ``shared`` (one learned scale for all dimensions), or
        ``decoder`` (the decoder outputs a scale per dimension; ``params_per_dim`` = 2).
    :param float scale_floor: the smallest scale the decoder may output.
    """

    family = dist.Normal

    def __init__(self, scale: float = 1.0, scale_mode: str = "shared", scale_floor: float = 1e-3):
        super().__init__()
        if scale_mode not in SCALE_MODES:
            raise ValueError(f"{self._name} likelihood: scale_mode must be one of {SCALE_MODES}, got {scale_mode!r}")
        if not scale > 0 or not scale_floor > 0:
            raise ValueError(f"{self._name} likelihood: scale and scale_floor must be positive, got {scale} and {scale_floor}")
        self.scale_mode, self.scale_floor = scale_mode, scale_floor
        self.params_per_dim = 2 if scale_mode == "decoder" else 1
        log_scale = torch.tensor(math.log(scale))
        if scale_mode == "shared":
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def x_scale(self) -> torch.Tensor:
        """The shared or fixed scale (not defined when the decoder outputs the scale)."""
        if self.scale_mode == "decoder":
            raise AttributeError(f"{self._name}: with scale_mode=decoder the scale varies with z")
        return self.log_scale.exp()

    def forward(self, decoder_output: torch.Tensor) -> dist.TorchDistribution:
        if self.scale_mode == "decoder":
            x_loc, x_raw_scale = decoder_output.chunk(2, dim=-1)
            x_scale = _positive(x_raw_scale, self.scale_floor)
        else:
            x_loc, x_scale = decoder_output, self.x_scale.expand_as(decoder_output)
        return self.family(x_loc, x_scale, validate_args=False).to_event(1)


class Gaussian(_LocScale):
    """x_d ~ N(x_loc, x_scale²)."""

    family = dist.Normal


class Laplace(_LocScale):
    """x_d ~ Laplace(x_loc, x_scale): heavier tails than the Gaussian, an L1 reconstruction."""

    family = dist.Laplace


class Beta(Likelihood):
    """x_d ~ Beta(α, β) on the open interval (0, 1), both concentrations from the decoder.

    :param float concentration_floor: the smallest α and β.
    """

    params_per_dim = 2

    def __init__(self, concentration_floor: float = 1e-2):
        super().__init__()
        self.concentration_floor = concentration_floor

    def forward(self, decoder_output: torch.Tensor) -> dist.TorchDistribution:
        raw_alpha, raw_beta = decoder_output.chunk(2, dim=-1)
        floor = self.concentration_floor
        return dist.Beta(_positive(raw_alpha, floor), _positive(raw_beta, floor), validate_args=False).to_event(1)

    def check_support(self, x: torch.Tensor) -> None:
        super().check_support(x)
        if not ((x > 0) & (x < 1)).all():
            self._refuse(
                x,
                "data strictly inside (0, 1)",
                "Dequantize the data (data.dequantize=true), which moves every value off 0 and 1",
            )


class DiscretizedLogisticLikelihood(Likelihood):
    """x_d ~ a mixture of ``mixtures`` logistics discretized into ``num_bins`` bins on [0, 1]
    (:class:`~models.distributions.DiscretizedLogistic`): a proper distribution over the
    discrete values of 8-bit data, so log p(x) converts straight to bits per dimension.

    :param int num_bins: the number of values, 256 for 8-bit data (17 for the digits).
    :param int mixtures: logistic components per dimension; the decoder outputs a logit, a loc
        and a log scale for each (``params_per_dim = 3·mixtures``, or 2 for one component).
    """

    discrete = True

    def __init__(self, num_bins: int = 256, mixtures: int = 1):
        super().__init__()
        if num_bins < 2 or mixtures < 1:
            raise ValueError(f"DiscretizedLogistic likelihood: needs num_bins ≥ 2 and mixtures ≥ 1, got {num_bins} and {mixtures}")
        self.num_bins, self.mixtures = num_bins, mixtures
        self.params_per_dim = 2 if mixtures == 1 else 3 * mixtures

    @property
    def _name(self) -> str:
        return "DiscretizedLogistic"

    def forward(self, decoder_output: torch.Tensor) -> dist.TorchDistribution:
        blocks = decoder_output.chunk(self.params_per_dim, dim=-1)  # each (..., x_dim)
        if self.mixtures == 1:
            loc, log_scale, logits = blocks[0].unsqueeze(-1), blocks[1].unsqueeze(-1), None
        else:
            logits, loc, log_scale = (torch.stack(blocks[i::3], -1) for i in range(3))  # (..., x_dim, M)
        # A floor on the scale: a vanishing one would make one bin certain and the rest −inf.
        log_scale = log_scale.clamp(min=-7.0)
        return DiscretizedLogistic(loc, log_scale, logits, num_bins=self.num_bins).to_event(1)

    def check_support(self, x: torch.Tensor) -> None:
        super().check_support(x)
        steps = x * (self.num_bins - 1)
        if not (((x >= 0) & (x <= 1)).all() and ((steps - steps.round()).abs() < 1e-3).all()):
            self._refuse(
                x,
                f"values on the {self.num_bins} levels k/{self.num_bins - 1} of [0, 1]",
                "Use 8-bit data without binarization or dequantization (data.binarize=none "
                "data.dequantize=false), and likelihood.num_bins to match the data's levels (17 for digits)",
            )


class _Counts(Likelihood):
    """A distribution over counts, non-negative integers (word or gene counts), whose mean is
    exp of the decoder's output (the log link of generalized linear models)."""

    discrete = True

    def check_support(self, x: torch.Tensor) -> None:
        super().check_support(x)
        if not ((x >= 0) & (x == x.round())).all():
            self._refuse(
                x,
                "counts, non-negative integers",
                "Use likelihood=gaussian for real values, or data.values=counts only on data that holds counts",
            )

    @staticmethod
    def _log_mean(decoder_output: torch.Tensor) -> torch.Tensor:
        return decoder_output.clamp(-LOG_RATE_BOUND, LOG_RATE_BOUND)


class Poisson(_Counts):
    """x_d ~ Poisson(rate = exp(decoder output)): counts whose variance is their mean."""

    def forward(self, decoder_output: torch.Tensor) -> dist.TorchDistribution:
        return dist.Poisson(self._log_mean(decoder_output).exp(), validate_args=False).to_event(1)


class NegativeBinomial(_Counts):
    """x_d ~ NB(mean μ_d = exp(decoder output), dispersion θ_d): counts more spread than a
    Poisson's, Var = μ + μ²/θ (the gamma-Poisson mixture, as scVI models gene counts). θ is a
    learned parameter per data dimension, the same for every z; as θ → ∞ it is the Poisson.

    :param int x_dim: the data's dimension, one dispersion each (handed by the run).
    :param float dispersion: θ's initial value, the same for every dimension.
    """

    def __init__(self, x_dim: int, dispersion: float = 1.0):
        super().__init__()
        if not (isinstance(dispersion, (int, float)) and not isinstance(dispersion, bool) and dispersion > 0):
            raise ValueError(f"likelihood.dispersion must be a positive number, got {dispersion!r}")
        self.log_dispersion = nn.Parameter(torch.full((x_dim,), math.log(dispersion)))

    def forward(self, decoder_output: torch.Tensor) -> dist.TorchDistribution:
        log_mean, log_dispersion = self._log_mean(decoder_output), self.log_dispersion
        # torch's NegativeBinomial(total_count=θ, logits=l) has mean θ·e^l: l = log μ − log θ
        return dist.NegativeBinomial(total_count=log_dispersion.exp(), logits=log_mean - log_dispersion, validate_args=False).to_event(1)


# likelihood=auto: the likelihood that fits what the data's values are (Dataset.values)
AUTO = {"binary": Bernoulli, "levels": ContinuousBernoulli, "counts": Poisson, "real": Gaussian}


def auto_choice(values: str | None = None, levels: int | None = None) -> type[Likelihood]:
    """The likelihood that fits what the data's values are: binary → Bernoulli, 8-bit levels →
    the continuous Bernoulli (as for Fashion-MNIST), counts → Poisson, real → Gaussian. The
    built-in sets, which have no ``values``, are read by their ``levels`` (2: binary; more:
    levels; none: real)."""
    if values is None:
        values = "real" if levels is None else "binary" if levels == 2 else "levels"
    if values not in AUTO:
        raise ValueError(f"likelihood=auto: the data's values are {values!r}, expected one of {', '.join(AUTO)}")
    return AUTO[values]


def auto(values: str | None = None, levels: int | None = None) -> Likelihood:
    """The default likelihood of a user's data (``likelihood=auto``), :func:`auto_choice` with its
    defaults. A training run replaces ``likelihood=auto`` in its config by the option chosen, so
    that a re-evaluation makes the same choice.

    :param values: the data's ``values`` (handed by the run).
    :param levels: the data's ``levels`` (handed by the run).
    """
    return auto_choice(values, levels)()
