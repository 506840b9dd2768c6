"""The paper presets written by hand in plain PyTorch: the reference the suite is measured against.

One stochastic layer (Burda et al. 2016), two stochastic layers (ibid.), or one layer with a
VampPrior (Tomczak & Welling 2018); diagonal Gaussian posteriors with the same scale floor as
the suite, a Bernoulli likelihood, single-sample ELBO training, and the IWAE estimate of log p(x).
"""

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from .common import synchronize

LOG_2PI = math.log(2 * math.pi)
SCALE_FLOOR = 1e-3


def mlp(sizes: list[int], activation: type[nn.Module]) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def gaussian(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    loc, raw = params.chunk(2, -1)
    return loc, F.softplus(raw) + SCALE_FLOOR


def log_normal(z, loc, scale):
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * LOG_2PI).sum(-1)


class HandVAE(nn.Module):
    def __init__(self, x_dim=784, hidden=(200, 200), z_dim=50, activation=nn.Tanh, z1_dim=None, hidden_top=(100, 100), pseudo_inputs=0, gaussian_floor=None):
        super().__init__()
        self.two_layer = z1_dim is not None
        self.gaussian_floor = gaussian_floor  # a Gaussian decoder (mean and scale per pixel) instead of Bernoulli
        bottom = z1_dim if self.two_layer else z_dim  # the layer next to x
        self.encoder = mlp([x_dim, *hidden, 2 * bottom], activation)
        self.decoder = mlp([bottom, *hidden, x_dim * (2 if gaussian_floor else 1)], activation)
        if self.two_layer:
            self.encoder_top = mlp([bottom, *hidden_top, 2 * z_dim], activation)
            self.decoder_top = mlp([z_dim, *hidden_top, 2 * bottom], activation)
        self.pseudo_inputs = nn.Parameter(torch.rand(pseudo_inputs, x_dim)) if pseudo_inputs else None

    def log_prior(self, z):
        if self.pseudo_inputs is None:
            return log_normal(z, torch.zeros_like(z), torch.ones_like(z))
        loc, scale = gaussian(self.encoder(self.pseudo_inputs))  # (C, z)
        # Σ_d (z − μ)²/σ² expanded into matrix products (float64 against cancellation): the
        # broadcast (..., C, z) tensor would be 500× the size of z.
        zf, precision, locf = z.reshape(-1, z.shape[-1]).double(), scale.double() ** -2, loc.double()
        squared = zf**2 @ precision.T - 2 * zf @ (locf * precision).T + (locf**2 * precision).sum(-1)
        per_component = -0.5 * squared - scale.double().log().sum(-1) - 0.5 * z.shape[-1] * LOG_2PI
        return (torch.logsumexp(per_component, -1) - math.log(len(loc))).float().reshape(z.shape[:-1])

    def log_weights(self, x: torch.Tensor, K: int) -> torch.Tensor:
        """(K, B) log p(x, z) − log q(z|x) for K reparameterized draws per point."""
        loc, scale = gaussian(self.encoder(x))
        z = loc + scale * torch.randn(K, *loc.shape, device=loc.device)
        log_q = log_normal(z, loc, scale)
        if self.two_layer:
            loc2, scale2 = gaussian(self.encoder_top(z))
            z2 = loc2 + scale2 * torch.randn_like(loc2)
            log_q = log_q + log_normal(z2, loc2, scale2)
            p_loc, p_scale = gaussian(self.decoder_top(z2))
            log_p = log_normal(z2, torch.zeros_like(z2), torch.ones_like(z2)) + log_normal(z, p_loc, p_scale)
        else:
            log_p = self.log_prior(z)
        out = self.decoder(z)
        if self.gaussian_floor:
            x_loc, x_raw = out.chunk(2, -1)
            log_px_z = log_normal(x, x_loc, F.softplus(x_raw) + self.gaussian_floor)
        else:
            log_px_z = (x * out - F.softplus(out)).sum(-1)
        return log_px_z + log_p - log_q


class HandTraining:
    """Adam (or Adagrad) on the negative ELBO over random minibatches, an epoch at a time.

    :param fused: Adam's fused kernel (``torch.optim.Adam(fused=True)``), as the suite's
        ``optim=adam`` takes it by default; ``False`` is plain Adam, what a researcher writes."""

    def __init__(self, model, train_gray, *, lr, batch_size, eps=1e-8, schedule=None, dynamic=True, optimizer="adam", fused=False):
        self.model, self.train_gray, self.batch_size, self.dynamic = model, train_gray, batch_size, dynamic
        if optimizer == "adagrad":
            if fused:
                raise ValueError("fused=True is for Adam; the hand-written Adagrad is plain")
            self.optimizer = torch.optim.Adagrad(model.parameters(), lr=lr)
        else:
            self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=eps, fused=fused)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule) if schedule else None

    def epoch(self) -> float:
        """One pass over the (re-binarized) training data; its seconds."""
        start = time.perf_counter()
        x_all = torch.bernoulli(self.train_gray) if self.dynamic else self.train_gray
        N = len(x_all)
        order = torch.randperm(N, device=x_all.device)
        for i in range(0, N, self.batch_size):
            loss = -self.model.log_weights(x_all[order[i : i + self.batch_size]], 1).sum()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        if self.scheduler:
            self.scheduler.step()
        synchronize()  # a GPU's queued steps belong to the epoch
        return time.perf_counter() - start


def train_budgeted(model, train_gray, *, max_seconds=None, max_epochs=None, **options):
    """:class:`HandTraining` until the time budget (whole epochs: the one that crosses it
    finishes) or the number of epochs is spent; returns epochs and seconds."""
    training = HandTraining(model, train_gray, **options)
    epochs, seconds = 0, 0.0
    while (max_seconds is None or seconds < max_seconds) and (max_epochs is None or epochs < max_epochs):
        seconds += training.epoch()
        epochs += 1
    return epochs, seconds


@torch.no_grad()
def iwae_log_px(model, x, K=5000, chunk_size=2**16):
    block = max(1, chunk_size // K)
    particles = max(1, min(K, chunk_size // block))
    out = []
    for start in range(0, len(x), block):
        xb = x[start : start + block]
        log_w = torch.cat([model.log_weights(xb, min(particles, K - k)) for k in range(0, K, particles)])
        out.append(torch.logsumexp(log_w, 0) - math.log(K))
    return torch.cat(out)
