"""Classification accuracy of a guide with a classifier q(y | x), and of the same network
trained on the run's kept labels alone (what the unlabelled points bought)."""

import logging
import time

import torch

from ..data import Dataset
from ..training.supervised import supervised_only
from .base import Context, Programs, random_stream

__all__ = ["Accuracy", "accuracy"]

log = logging.getLogger(__name__)


@torch.no_grad()
def accuracy(classify, x: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of points whose most probable class under ``classify(x)`` (logits) is their label."""
    return (classify(x).argmax(-1).cpu() == labels.cpu()).float().mean().item()


class Accuracy:
    """``accuracy`` of q(y | x) on the split's labels; where the run kept some training labels
    only (``data.num_labeled``), ``accuracy_supervised_only``: the guide's classifier network,
    fresh, trained ``supervised_only_steps`` steps on those labels alone (0: no baseline),
    once for every split.
    """

    keys = ("accuracy", "accuracy_supervised_only")

    def __init__(self, supervised_only_steps: int = 2000):
        if isinstance(supervised_only_steps, bool) or not isinstance(supervised_only_steps, int) or supervised_only_steps < 0:
            raise ValueError(f"supervised_only_steps={supervised_only_steps!r}: expected a non-negative number of steps (0: no baseline)")
        self.steps, self._baseline = supervised_only_steps, None

    def unsupported(self, programs: Programs, data: Dataset) -> str | None:
        if not programs.guide.classifier:
            return "it needs a guide with a classifier q(y|x) (guide=ss_vae)"
        if data.labels is None:
            return f"it needs labelled data, and data={data.name} has no labels"
        return None

    def __call__(self, context: Context) -> dict:
        labels = context.dataset.labels[context.split][: context.x.shape[0]]
        out = {"accuracy": accuracy(context.guide.classify, context.x, labels)}
        baseline = self.baseline(context)
        if baseline is not None:
            out["accuracy_supervised_only"] = accuracy(baseline, context.x, labels)
        return out

    def baseline(self, context: Context):
        """The supervised-only network, trained at the first call, in a stream of its own."""
        kept = "mask" in (context.dataset.extra or {}).get("train", {})
        if self._baseline is None and kept and self.steps:
            start = time.perf_counter()
            with random_stream(context.seed, context.name, "supervised_only"):
                self._baseline = supervised_only(context.guide.classifier, context.dataset, self.steps)
            log.info(f"supervised-only baseline: {self.steps} steps on the labelled points in {time.perf_counter() - start:.1f} s")
        return self._baseline
