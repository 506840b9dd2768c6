"""The linear-Gaussian model: a VAE whose log p(x) is known in closed form.

z ~ N(0, I), x ~ N(W z + b, σ² I)  ⇒  x ~ N(b, W Wᵀ + σ² I)   (probabilistic PCA; Tipping &
Bishop 1999). Estimators are checked against :meth:`LinearGaussian.exact_log_px`.
"""

import torch
from torch import nn

import pyro.distributions as dist

from .capabilities import Capabilities
from .likelihoods import Gaussian
from .priors import StandardNormal
from .vae import VAE

__all__ = ["LinearGaussian"]


class LinearGaussian(VAE):
    """A :class:`VAE` with a standard normal prior, a linear decoder and an isotropic Gaussian
    likelihood. It is the same Pyro program as any VAE; it only adds the exact marginal.

    :param prior: a :class:`~models.priors.StandardNormal`.
    :param decoder: an ``nn.Linear(z_dim, x_dim)`` holding W and b.
    :param likelihood: a :class:`~models.likelihoods.Gaussian` (fixed or learned σ).
    """

    def __init__(self, prior: StandardNormal, decoder: nn.Linear, likelihood: Gaussian):
        for part, value, expected in [
            ("prior", prior, StandardNormal),
            ("decoder", decoder, nn.Linear),
            ("likelihood", likelihood, Gaussian),
        ]:
            if not isinstance(value, expected):
                raise ValueError(
                    f"LinearGaussian needs a {expected.__name__} {part} for its closed form, "
                    f"got {type(value).__name__}; use experiment=linear_gaussian, or model=vae "
                    "for other parts"
                )
        if likelihood.scale_mode == "decoder":
            raise ValueError("LinearGaussian needs one scale σ for all of x; use likelihood.scale_mode=shared or fixed")
        super().__init__(prior, decoder, likelihood)

    capabilities = Capabilities(untraceable=None, exact_log_px=True)

    @classmethod
    def from_params(cls, W: torch.Tensor, b: torch.Tensor, x_scale: float) -> "LinearGaussian":
        """Build the model with given parameters: ``W`` is ``(x_dim, z_dim)``, ``b`` is ``(x_dim,)``."""
        x_dim, z_dim = W.shape
        decoder = nn.Linear(z_dim, x_dim)
        with torch.no_grad():
            decoder.weight.copy_(W)
            decoder.bias.copy_(b)
        return cls(StandardNormal(z_dim), decoder, Gaussian(x_scale, scale_mode="fixed"))

    def marginal(self) -> dist.MultivariateNormal:
        """p(x) = N(b, W Wᵀ + σ² I)."""
        W, b = self.decoder.weight, self.decoder.bias  # (x_dim, z_dim), (x_dim,)
        x_dim = W.shape[0]
        x_cov = W @ W.T + self.likelihood.x_scale**2 * torch.eye(x_dim, dtype=W.dtype, device=W.device)
        return dist.MultivariateNormal(b, covariance_matrix=x_cov)

    @torch.no_grad()
    def exact_log_px(self, x: torch.Tensor) -> torch.Tensor:
        """:returns: a ``(batch,)``-shaped tensor of exact log p(x) in nats."""
        return self.marginal().log_prob(x)

    @torch.no_grad()
    def exact_posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        """p(z|x) = N(M⁻¹ Wᵀ (x − b), σ² M⁻¹) with M = WᵀW + σ² I, batched over x."""
        W, b = self.decoder.weight, self.decoder.bias
        z_dim = W.shape[1]
        var = self.likelihood.x_scale**2
        M = W.T @ W + var * torch.eye(z_dim, dtype=W.dtype, device=W.device)
        z_loc = torch.linalg.solve(M, W.T @ (x - b).T).T  # (B, z_dim)
        return dist.MultivariateNormal(z_loc, covariance_matrix=var * torch.linalg.inv(M))
