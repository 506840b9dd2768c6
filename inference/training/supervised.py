"""The supervised-only baseline of a semi-supervised run: the guide's classifier network,
freshly initialized, trained on the labelled points alone. What the run's accuracy gains over
this baseline is what the unlabelled points bought, through the model."""

import copy

import torch
from torch import nn
from torch.nn import functional as F

from ..data import Dataset

__all__ = ["supervised_only"]


def supervised_only(classifier: nn.Module, data: Dataset, steps: int, lr: float = 1e-3, batch_size: int = 100) -> nn.Module:
    """A copy of ``classifier`` with fresh parameters, fitted by Adam to the cross-entropy of the
    training points whose labels are kept (the batch key ``mask``), ``batch_size`` of them per
    step, drawn as the run draws its training points (binarized afresh where it is dynamic).
    It neither sees the unlabelled points nor stops early on the validation labels, which the
    semi-supervised run does not use either. Returns the network in eval mode."""
    network = copy.deepcopy(classifier)
    for module in network.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    keys = data.batch_extra("train", ("y", "mask"))
    labelled = torch.nonzero(keys["mask"]).squeeze(1)
    if len(labelled) == 0:
        raise ValueError("the supervised-only baseline needs labelled training points: set data.num_labeled=N")
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    network.train()
    for _ in range(steps):
        batch = labelled[torch.randperm(len(labelled), device=labelled.device)[:batch_size]]
        loss = F.cross_entropy(network(data.train_epoch(batch)), keys["y"][batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return network.eval()
