"""Denoising with a trained model (Im et al. 2017): a corrupted x̃ goes through the guide, z ~
q(z | x̃), and the model's mean E[x | z], averaged over draws of z, is the clean estimate; its
peak signal-to-noise ratio against the clean x says how much of the corruption the model
removed, beside that of x̃ itself."""

import torch
from pyro import poutine

from .programs import Program, simulated, trace_latent_sites

__all__ = ["denoised", "denoising_scores", "psnr"]


@torch.no_grad()
def denoised(model: Program, guide: Program, x_corrupted: torch.Tensor, draws: int = 8) -> torch.Tensor:
    """E_q[E[x | z]], z ~ q(z | x̃): the mean of the observation distribution at ``draws`` draws
    of z from the guide (in eval mode, so that it sees x̃ as given), averaged."""
    total = torch.zeros_like(x_corrupted)
    for _ in range(draws):
        trace = poutine.trace(guide).get_trace(x_corrupted)
        latents = {name: trace.nodes[name]["value"] for name in trace_latent_sites(trace)}
        mean = simulated(model, x_corrupted, latents).mean
        if mean is None:
            raise ValueError("denoising needs the mean of p(x | z), which this model's observation distribution does not have")
        total += mean
    return total / draws


def psnr(estimate: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """10·log10(1 / MSE) per image, for values in [0, 1] (peak 1): ``(N,)``."""
    mse = ((estimate.clamp(0, 1) - clean) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp(min=1e-10))


@torch.no_grad()
def denoising_scores(model: Program, guide: Program, x: torch.Tensor, corruption: type, levels, binary: bool) -> dict:
    """For each level, the test points corrupted by ``corruption(level)``: the mean PSNR of the
    corrupted input (clipped to [0, 1]) and of its denoised estimate against the clean x, and on
    binary data the fraction of pixels each gets wrong (the estimate thresholded at ½)."""
    scores = {"corruption": corruption.name, "levels": [float(level) for level in levels], "psnr_input": [], "psnr_denoised": []}
    if binary:
        scores.update(error_input=[], error_denoised=[])
    for level in levels:
        noisy = corruption(level)(x)
        estimate = denoised(model, guide, noisy)
        scores["psnr_input"].append(psnr(noisy, x).mean().item())
        scores["psnr_denoised"].append(psnr(estimate, x).mean().item())
        if binary:
            scores["error_input"].append(((noisy > 0.5) != (x > 0.5)).float().mean().item())
            scores["error_denoised"].append(((estimate > 0.5) != (x > 0.5)).float().mean().item())
    return scores
