"""Priors p(z): modules that return a Pyro distribution over z with event dim 1.

A prior is an ``nn.Module`` called with the batch size; it has a ``z_dim``. Learned parameters
(mixture weights, pseudo-inputs, flows) live in the module, so the model's ``pyro.module``
registers them and the optimizer trains them with the rest.
"""

import torch
from torch import nn

import pyro.distributions as dist
from pyro.distributions.transforms import Permute, spline_coupling

from .distributions import DiagonalNormalMixture

__all__ = ["StandardNormal", "LearnedNormal", "MixturePrior", "VampPrior", "FlowPrior"]


def _check_z_dim(name: str, z_dim: int, least: int = 1) -> None:
    if isinstance(z_dim, bool) or not isinstance(z_dim, int) or z_dim < least:
        raise ValueError(f"{name}: z_dim must be an integer of at least {least}, got {z_dim}")


def _check_components(name: str, components: int) -> None:
    if isinstance(components, bool) or not isinstance(components, int) or components < 1:
        raise ValueError(f"{name}: components must be a positive integer, got {components}")


class StandardNormal(nn.Module):
    """p(z) = N(0, I)."""

    def __init__(self, z_dim: int):
        super().__init__()
        _check_z_dim("StandardNormal", z_dim)
        self.z_dim = z_dim
        # Buffers rather than constants, so that ``.to(device)`` moves them with the model.
        self.register_buffer("z_loc", torch.zeros(z_dim))
        self.register_buffer("z_scale", torch.ones(z_dim))

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        """:returns: a distribution with batch shape ``(batch_size,)`` and event shape ``(z_dim,)``."""
        return dist.Normal(self.z_loc, self.z_scale).expand([batch_size, self.z_dim]).to_event(1)


class LearnedNormal(nn.Module):
    """p(z) = N(z_loc, diag z_scale²) with learned loc and scale (initialized to N(0, I))."""

    def __init__(self, z_dim: int):
        super().__init__()
        _check_z_dim("LearnedNormal", z_dim)
        self.z_dim = z_dim
        self.z_loc = nn.Parameter(torch.zeros(z_dim))
        self.z_log_scale = nn.Parameter(torch.zeros(z_dim))

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        return dist.Normal(self.z_loc, self.z_log_scale.exp()).expand([batch_size, self.z_dim]).to_event(1)


class MixturePrior(nn.Module):
    """p(z) = Σ_k π_k N(z; μ_k, diag σ_k²), with learned weights, locs and scales.

    The locs start spread out as N(0, I) draws so that the components do not stay identical.

    :param int components: the number of mixture components K.
    """

    def __init__(self, z_dim: int, components: int = 10):
        super().__init__()
        _check_z_dim("MixturePrior", z_dim)
        _check_components("MixturePrior", components)
        self.z_dim = z_dim
        self.logits = nn.Parameter(torch.zeros(components))
        self.z_locs = nn.Parameter(torch.randn(components, z_dim))
        self.z_log_scales = nn.Parameter(torch.zeros(components, z_dim))

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        return DiagonalNormalMixture(self.logits, self.z_locs, self.z_log_scales.exp(), [batch_size])


class VampPrior(nn.Module):
    """The VampPrior (Tomczak & Welling 2018, eq. 9): p(z) = (1/K) Σ_k q(z | u_k), the guide's
    posterior averaged over K learned pseudo-inputs u_k.

    The seam: the prior holds the pseudo-inputs and borrows the guide's
    ``posterior_params(x) -> (z_loc, z_scale)``; the encoder's weights stay the guide's, and
    the optimizer sees them once.

    :param guide: a guide with ``posterior_params`` and a ``z_dim``.
    :param int x_dim: the size of a (flat) data point, and so of a pseudo-input.
    :param int components: K, the number of pseudo-inputs. They start as uniform draws on
        [0, 1], the range of image data.
    """

    def __init__(self, guide: nn.Module, x_dim: int, components: int = 500):
        super().__init__()
        if not callable(getattr(guide, "posterior_params", None)):
            raise ValueError(
                f"VampPrior needs a guide with diagonal Gaussian posteriors of x alone, posterior_params(x) -> (z_loc, z_scale); "
                f"{type(guide).__name__} has none (use guide=normal, or another prior)"
            )
        _check_components("VampPrior", components)
        # Kept out of the module tree: the guide owns the encoder and registers it itself.
        self._guide = (guide,)
        self.z_dim = guide.z_dim
        self.pseudo_inputs = nn.Parameter(torch.rand(components, x_dim))

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        (guide,) = self._guide
        z_loc, z_scale = guide.posterior_params(self.pseudo_inputs)  # (K, z_dim) each
        weights = torch.zeros(len(z_loc), device=z_loc.device)
        return DiagonalNormalMixture(weights, z_loc, z_scale, [batch_size])


class FlowPrior(nn.Module):
    """A normalizing flow on a standard normal base: z = f_L ∘ … ∘ f_1(u), u ~ N(0, I).

    Each layer is a rational-quadratic spline coupling (Durkan et al. 2019), followed by a
    fixed permutation so that every dimension gets transformed. Couplings invert in one pass,
    so both sampling and log p(z) are fast.

    :param int layers: the number of coupling layers.
    :param hidden: hidden widths of each coupling's conditioner network.
    :param int count_bins: spline segments per dimension.
    """

    def __init__(self, z_dim: int, layers: int = 4, hidden: list[int] = (64, 64), count_bins: int = 8):
        super().__init__()
        _check_z_dim("FlowPrior", z_dim, least=2)  # a coupling needs two halves
        if layers < 1:
            raise ValueError(f"FlowPrior: layers must be at least 1, got {layers}")
        self.z_dim = z_dim
        self.register_buffer("u_loc", torch.zeros(z_dim))
        self.register_buffer("u_scale", torch.ones(z_dim))
        self.couplings = nn.ModuleList(spline_coupling(z_dim, hidden_dims=list(hidden), count_bins=count_bins) for _ in range(layers))
        # Fixed, not learned; a buffer so that it moves with the module and is checkpointed.
        g = torch.Generator().manual_seed(0)
        self.register_buffer("permutations", torch.stack([torch.randperm(z_dim, generator=g) for _ in range(layers)]))

    @property
    def transforms(self) -> list:
        """f_1, …, f_L as Pyro transforms: coupling, permutation, coupling, permutation, …"""
        return [t for coupling, perm in zip(self.couplings, self.permutations) for t in (coupling, Permute(perm))]

    def forward(self, batch_size: int) -> dist.TorchDistribution:
        base = dist.Normal(self.u_loc, self.u_scale).expand([batch_size, self.z_dim]).to_event(1)
        return dist.TransformedDistribution(base, self.transforms)
