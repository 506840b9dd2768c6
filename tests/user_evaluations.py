"""An evaluation written as a user would write it, outside the suite: a class the run builds
from ``+evaluation.methods.NAME._target_=user_evaluations.CLASS`` and calls with a context
(this folder is on the path of the tests)."""

import torch
from pyro import poutine

from inference.estimators import simulated, trace_latent_sites


class ReconstructionError:
    """The mean squared error of x against the mean of p(x | z), z ~ q(z | x), over ``draws``
    draws of z per point: a number of a user's own, with no ``keys``, so it lands under its name."""

    def __init__(self, draws: int = 4):
        self.draws = draws

    @torch.no_grad()
    def __call__(self, context) -> dict:
        errors = []
        for _ in range(self.draws):
            trace = poutine.trace(context.guide).get_trace(context.x)
            latents = {name: trace.nodes[name]["value"] for name in trace_latent_sites(trace)}
            mean = simulated(context.model, context.x, latents).mean
            errors.append(((mean - context.x) ** 2).mean())
        return {"mse": torch.stack(errors).mean().item(), "draws": self.draws}
