"""The semi-amortized Normal guide (Kim et al. 2018, SA-VAE): the encoder's guess, refined per
data point by a few steps of gradient ascent on the ELBO."""

from collections.abc import Callable

import torch
from torch import nn

import pyro
import pyro.distributions as dist
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from models.capabilities import Capabilities
from models.distributions import diagonal_normal_params
from models.registration import register

from .normal import check_guide_arguments

__all__ = ["SemiAmortizedNormal"]

REFINE = ("train", "eval", "both")


class SemiAmortizedNormal(nn.Module):
    """q(z|x) = N(z_loc, diag z_scale²) whose parameters λ start at the encoder's output λ₀(x)
    and take ``steps`` steps λ ← λ + step_size·∇_λ ELBO(x; λ), each ELBO a single
    reparameterized sample. In training the steps stay differentiable, so the encoder learns a
    good starting point and the decoder sees refined posteriors (Kim et al. 2018, Algorithm 1).

    :param model: the model whose ELBO the steps climb; it must have one latent site ``"z"``.
    :param int steps: refinement steps per call.
    :param float step_size: the gradient-ascent step on the encoder's raw outputs.
    :param str refine: refine in ``train``-ing, in ``eval``-uation, or ``both``.
    """

    def __init__(
        self,
        encoder: Callable[[int, int], nn.Module],
        x_dim: int,
        z_dim: int,
        model: nn.Module,
        steps: int = 5,
        step_size: float = 1e-2,
        refine: str = "both",
        scale_floor: float = 1e-3,
    ):
        super().__init__()
        check_guide_arguments("SemiAmortizedNormal", z_dim, scale_floor)
        if refine not in REFINE or steps < 0 or not step_size > 0:
            raise ValueError(f"SemiAmortizedNormal: needs refine in {REFINE}, steps ≥ 0, step_size > 0; got {refine!r}, {steps}, {step_size}")
        self.encoder = encoder(x_dim, 2 * z_dim)
        self.z_dim, self.steps, self.step_size, self.refine, self.scale_floor = z_dim, steps, step_size, refine, scale_floor
        self._model = (model,)  # borrowed, not a submodule: the model registers its own weights

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(untraceable="it takes gradients inside the guide" if self.steps else None, encoder=True, posterior_params=True)

    def _log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) per data point, hidden from any enclosing trace or plate."""
        (model,) = self._model
        with poutine.block():
            trace = poutine.trace(poutine.condition(model, data={"z": z})).get_trace(x)
        sites = {n: s for n, s in trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)}
        unobserved = sorted(n for n, s in sites.items() if not s["is_observed"])
        if unobserved:
            raise ValueError(f"SemiAmortizedNormal refines one latent site 'z', but the model also samples {unobserved}")
        return sum(s["fn"].log_prob(s["value"]) for s in sites.values())

    def _refined(self, x: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        differentiable = self.training and torch.is_grad_enabled()  # not inside a no_grad evaluation
        params = start if differentiable else start.detach().requires_grad_(True)
        with torch.enable_grad():  # evaluation runs under no_grad; the steps need gradients
            for _ in range(self.steps):
                z_loc, z_scale = diagonal_normal_params(params, self.scale_floor)
                z = z_loc + z_scale * torch.randn_like(z_loc)
                log_q = dist.Normal(z_loc, z_scale).log_prob(z).sum(-1)
                elbo = (self._log_joint(x, z) - log_q).sum()  # points are independent: one sum serves all
                (grad,) = torch.autograd.grad(elbo, params, create_graph=differentiable)
                params = params + self.step_size * grad
        # Out of training, the steps are not differentiated through; the start point still gets
        # the gradient as if the refinement were the identity (a local fit of the start needs it).
        return params if differentiable else start + (params - start).detach()

    def posterior_params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:returns: the refined ``z_loc`` and ``z_scale``, each ``(batch, z_dim)``-shaped."""
        params = self.encoder(x)
        if self.steps and self.refine in ("both", "train" if self.training else "eval"):
            params = self._refined(x, params)
        return diagonal_normal_params(params, self.scale_floor)

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        z_loc, z_scale = self.posterior_params(x)
        return dist.Normal(z_loc, z_scale, validate_args=False).to_event(1)

    def forward(self, x: torch.Tensor) -> None:
        register("guide", self)
        q = self.posterior(x)  # outside the plate: the refinement runs the model, plate and all
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", q)
