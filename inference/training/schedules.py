"""Learning-rate schedules, stepped once per epoch: factories ``schedule(optimizer) -> LRScheduler``."""

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["constant", "iwae"]


def constant(optimizer: torch.optim.Optimizer) -> LambdaLR:
    """The optimizer's learning rate throughout."""
    return LambdaLR(optimizer, lambda epoch: 1.0)


def iwae_factor(epoch: int, stages: int = 8) -> float:
    """Burda et al. 2016, §5: stage i lasts 3^i epochs at lr·10^(−i/(stages−1)), i = 0 … stages−1;
    the last stage's rate holds after that (3280 epochs in all for 8 stages)."""
    stage, end = 0, 1
    while epoch >= end and stage < stages - 1:
        stage += 1
        end += 3**stage
    return 10.0 ** (-stage / (stages - 1))


def iwae(optimizer: torch.optim.Optimizer, stages: int = 8) -> LambdaLR:
    """The IWAE paper's schedule; see :func:`iwae_factor`."""
    return LambdaLR(optimizer, lambda epoch: iwae_factor(epoch, stages))
