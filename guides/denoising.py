"""The denoising criterion (Im, Ahn, Memisevic & Bengio 2017): the guide sees a corrupted x̃.

A corruption p(x̃ | x) is applied to what the guide encodes, never to what the model scores, so
that training maximizes E_{p(x̃|x)} E_{q(z|x̃)}[log p(x, z) − log q(z | x̃)]: for every x̃,
q(· | x̃) is a distribution over z, so this is a lower bound on log p(x) like any ELBO.
:class:`Denoising` wraps any guide so: in training mode it corrupts the guide's input, in eval
mode (every estimator) it passes x as it is, so that log p̂(x) of clean data is estimated as for
any run. Fed a corrupted x̃ in eval mode it is q(z | x̃), the denoiser.

Each corruption is a module with a ``level`` in its range and ``forward(x) -> x̃``; at level 0
it returns x itself.
"""

import dataclasses

import torch
from torch import nn

from models.capabilities import Capabilities, capabilities_of

__all__ = ["CORRUPTIONS", "Corruption", "Denoising", "GaussianNoise", "Mask", "NoCorruption", "SaltAndPepper"]


class Corruption(nn.Module):
    """p(x̃ | x) at ``level``, which must lie in ``[0, maximum]``."""

    name = "corruption"
    maximum: float = 1.0
    meaning = "a level"

    def __init__(self, level: float):
        super().__init__()
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 <= level <= self.maximum:
            bound = "" if self.maximum == float("inf") else f" and at most {self.maximum:g}"
            raise ValueError(f"corruption.level={level!r}: {self.name} needs {self.meaning}, at least 0{bound}")
        self.level = float(level)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.level == 0 else self.corrupt(x)

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"level={self.level:g}"


class NoCorruption(Corruption):
    """``corruption=none``: the guide sees x as it is."""

    name, meaning, maximum = "none", "no level", 0.0

    def __init__(self, level: float = 0.0):
        super().__init__(level)


class SaltAndPepper(Corruption):
    """Each pixel, with probability ``level``, set to 0 or 1 (salt or pepper, even odds)."""

    name, meaning = "salt_pepper", "the probability that a pixel is replaced"

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        hit = torch.rand_like(x) < self.level
        return torch.where(hit, torch.bernoulli(torch.full_like(x, 0.5)), x)


class Mask(Corruption):
    """Each pixel, with probability ``level``, set to 0 (dropped)."""

    name, meaning = "mask", "the probability that a pixel is masked"

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(torch.rand_like(x) < self.level, torch.zeros_like(x), x)


class GaussianNoise(Corruption):
    """x + level·ε, ε ~ N(0, I): the guide's input is not clipped (an encoder takes any real)."""

    name, meaning, maximum = "gaussian", "the noise's standard deviation", float("inf")

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.level * torch.randn_like(x)


CORRUPTIONS = {c.name: c for c in (SaltAndPepper, Mask, GaussianNoise)}


class Denoising(nn.Module):
    """``guide`` trained on corrupted inputs: ``forward(x)`` runs ``guide(corruption(x))`` in
    training mode and ``guide(x)`` in eval mode. It declares what ``guide`` declares; a guide
    with parameters per training point (``guide=local``) cannot take it, as a corrupted point
    is no point it knows."""

    def __init__(self, guide: nn.Module, corruption: Corruption):
        super().__init__()
        if not capabilities_of(guide).amortized:
            raise ValueError(
                f"corruption={corruption.name} corrupts what the guide sees, but {type(guide).__name__} keeps parameters for each "
                "training point and knows no corrupted one; use an amortized guide (guide=normal)"
            )
        self.guide, self.corruption = guide, corruption

    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(capabilities_of(self.guide), denoising=True)

    def forward(self, x: torch.Tensor, *args, **kwargs):
        return self.guide(self.corruption(x) if self.training else x, *args, **kwargs)
