"""The guide of the semi-supervised VAE (M2): q(y | x) q(z | x, y).

A classifier network gives q(y | x); it proposes y for the points whose label is not observed
(site ``y_unobserved``, masked to those points; ``objective=ss_elbo`` sums over its values
exactly). z ~ N(loc, scale) from the ``encoder`` on [x, one-hot y], with y the observed label
where there is one.
"""

from collections.abc import Callable

import torch
from torch import nn

import pyro
import pyro.distributions as dist
from pyro import poutine

from models.capabilities import Capabilities
from models.distributions import diagonal_normal
from models.networks import MLP
from models.registration import register
from models.ss_vae import with_one_hot

from .normal import check_guide_arguments

__all__ = ["SemiSupervisedGuide"]


class SemiSupervisedGuide(nn.Module):
    """q(y | x) by ``classifier``, q(z | x, y) by ``encoder``; ``forward(x, y=None, mask=None)``.

    :param encoder: a factory ``encoder(in_features, out_features)``, asked for a network from
        ``x_dim + num_classes`` to ``2 * z_dim``.
    :param classifier_hidden: the widths of the classifier's hidden layers (ReLU).
    """

    capabilities = Capabilities(untraceable=None, batch_keys=("y", "mask"), classifier=True)

    def __init__(
        self,
        encoder: Callable[[int, int], nn.Module],
        x_dim: int,
        z_dim: int,
        num_classes: int = 10,
        classifier_hidden: tuple[int, ...] = (200,),
        scale_floor: float = 1e-3,
    ):
        super().__init__()
        check_guide_arguments("SemiSupervisedGuide", z_dim, scale_floor)
        self.encoder = encoder(x_dim + num_classes, 2 * z_dim)
        self.classifier = MLP(x_dim, num_classes, hidden=list(classifier_hidden))
        self.num_classes, self.z_dim, self.scale_floor = num_classes, z_dim, scale_floor

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of q(y | x): ``(B, num_classes)``."""
        return self.classifier(x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> None:
        register("guide", self)
        with pyro.plate("data", x.shape[0]):
            q_y = dist.Categorical(logits=self.classify(x))
            if y is None:
                y = pyro.sample("y", q_y)
            else:
                with poutine.mask(mask=~mask):  # the unlabelled points' y, as the model's obs_mask names it
                    proposed = pyro.sample("y_unobserved", q_y)
                y = torch.where(mask, y, proposed)
            pyro.sample("z", diagonal_normal(self.encoder(with_one_hot(x, y, self.num_classes)), self.scale_floor))
