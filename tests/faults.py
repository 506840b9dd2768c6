"""Faults to inject into runs under test: a decoder that turns NaN on cue."""

import torch

from models import MLP


class _NaNGradient(torch.autograd.Function):
    """The identity forward; a NaN gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


class FaultyMLP(MLP):
    """An MLP decoder whose ``fail_at``-th and next forward passes in training mode go wrong:
    ``fault="loss"`` makes the output NaN, ``fault="grad"`` its gradient. Passes are counted per
    process and never again after those two, so a rolled-back run meets the fault once."""

    def __init__(self, in_features: int, out_features: int, hidden=(32,), activation="ReLU", fail_at: int = 30, fault: str = "loss"):
        super().__init__(in_features, out_features, hidden, activation)
        self.fail_at, self.fault, self.passes = fail_at, fault, 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = super().forward(z)
        if self.training:
            self.passes += 1
            if self.fail_at <= self.passes <= self.fail_at + 1:
                out = out * float("nan") if self.fault == "loss" else _NaNGradient.apply(out)
        return out
