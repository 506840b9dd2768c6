"""Amortized normalizing-flow guides: a diagonal Normal from the encoder, then conditional
invertible transforms that the encoder's context steers (inverse autoregressive flow,
Kingma et al. 2016; neural spline flows, Durkan et al. 2019)."""

from collections.abc import Callable

import torch
from torch import nn

import pyro
import pyro.distributions as dist

from models.capabilities import Capabilities
from models.distributions import diagonal_normal_params
from models.registration import register

from .normal import check_guide_arguments

__all__ = ["AmortizedFlow"]


class AmortizedFlow(nn.Module):
    """q(z|x): z₀ ~ N(z_loc(x), diag z_scale(x)²), z = f_L(… f_1(z₀; h(x)) …; h(x)).

    :param encoder: a factory ``encoder(in_features, out_features)``; asked for
        ``2·z_dim + context_dim`` outputs: the base loc, raw scale and the context h.
    :param transform: a factory ``transform(input_dim, context_dim)`` of a Pyro conditional
        transform module, e.g. ``pyro.distributions.transforms.conditional_affine_autoregressive``
        (IAF) or ``conditional_spline_autoregressive``; one per layer.
    :param int layers: how many transforms.
    :param int context_dim: the size of the context the encoder passes to the transforms.
    """

    capabilities = Capabilities(untraceable=None, encoder=True)

    def __init__(
        self,
        encoder: Callable[[int, int], nn.Module],
        x_dim: int,
        z_dim: int,
        transform: Callable[[int, int], nn.Module],
        layers: int = 2,
        context_dim: int = 16,
        scale_floor: float = 1e-3,
    ):
        super().__init__()
        check_guide_arguments("AmortizedFlow", z_dim, scale_floor)
        if layers < 1 or context_dim < 1:
            raise ValueError(f"AmortizedFlow: layers and context_dim must be positive, got {layers} and {context_dim}")
        self.z_dim, self.context_dim, self.scale_floor = z_dim, context_dim, scale_floor
        self.encoder = encoder(x_dim, 2 * z_dim + context_dim)
        self.transforms = nn.ModuleList(transform(z_dim, context_dim) for _ in range(layers))

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(z|x) with batch shape ``(batch,)`` and event shape ``(z_dim,)``."""
        out = self.encoder(x)
        z_loc, z_scale = diagonal_normal_params(out[..., : 2 * self.z_dim], self.scale_floor)
        context = out[..., 2 * self.z_dim :]
        base = dist.Normal(z_loc, z_scale, validate_args=False).to_event(1)
        return dist.TransformedDistribution(base, [t.condition(context) for t in self.transforms])

    def forward(self, x: torch.Tensor) -> None:
        register("guide", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.posterior(x))
