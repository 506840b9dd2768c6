"""Likelihoods p(x|z): map the decoder's output to a Pyro distribution over x.

Each likelihood states how many decoder outputs it needs per data dimension
(``params_per_dim``) and checks that data lies in its support before any training starts,
so that a mismatch is a clear error rather than a silently wrong log p(x).
Data is flat, ``(..., x_dim)``, so every distribution has event dim 1.
"""

import math

import torch
from torch import nn

import pyro.distributions as dist

__all__ = ["Likelihood", "Bernoulli", "Gaussian"]


def _value_range(x: torch.Tensor) -> str:
    return f"[{x.min().item():.4g}, {x.max().item():.4g}]"


class Likelihood(nn.Module):
    """Base class: ``likelihood(decoder_output)`` returns a distribution over x.

    Subclasses set ``params_per_dim`` and implement :meth:`forward` and :meth:`check_support`.
    """

    params_per_dim: int = 1

    def check_support(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` if ``x`` lies outside this likelihood's support."""
        raise NotImplementedError

    def _check_finite(self, x: torch.Tensor) -> None:
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).sum().item()
            raise ValueError(
                f"{type(self).__name__} likelihood: the data holds {bad} NaN or infinite values; "
                "clean the data before training"
            )


class Bernoulli(Likelihood):
    """x_d ~ Bernoulli(logits = decoder output), for binary data."""

    params_per_dim = 1

    def forward(self, x_logits: torch.Tensor) -> dist.TorchDistribution:
        # validate_args=False: the support was checked once, up front, by check_support;
        # checking every batch again costs time on the hot path.
        return dist.Bernoulli(logits=x_logits, validate_args=False).to_event(1)

    def check_support(self, x: torch.Tensor) -> None:
        self._check_finite(x)
        if not ((x == 0) | (x == 1)).all():
            raise ValueError(
                f"Bernoulli likelihood needs binary data in {{0, 1}}, but the data has values in "
                f"{_value_range(x)} that are not all 0 or 1. Binarize the data "
                "(data.binarize=dynamic or data.binarize=fixed), or use a likelihood for "
                "gray values (likelihood=gaussian)"
            )


class Gaussian(Likelihood):
    """x_d ~ N(decoder output, x_scale²), with one scale shared by every dimension.

    :param float scale: the scale, or its initial value when learned.
    :param bool learned: learn the scale (a single parameter) or keep it fixed.
    """

    params_per_dim = 1

    def __init__(self, scale: float = 1.0, learned: bool = True):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"Gaussian likelihood: scale must be positive, got {scale}")
        log_scale = torch.tensor(math.log(scale))
        if learned:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def x_scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def forward(self, x_loc: torch.Tensor) -> dist.TorchDistribution:
        return dist.Normal(x_loc, self.x_scale.expand_as(x_loc), validate_args=False).to_event(1)

    def check_support(self, x: torch.Tensor) -> None:
        self._check_finite(x)
