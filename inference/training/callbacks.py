"""What :func:`~inference.training.loop.fit` does beyond the SVI loop, as callbacks: each
behaviour one small object in the list ``fit(..., callbacks=[...])`` calls at its hooks, in
the list's order.

- ``epoch_end(row, progress)``: after an epoch's steps and the scheduler's step, before the row
  joins the curve: a callback may fill the row (:class:`ValidationElbo`) or read it (the
  experiment trackers, after those that fill it);
- ``stop(progress)``: after the row joined: a reason to stop before the epochs are done
  (:class:`TimeLimit`), or None;
- ``checkpoint(progress, final)``: then, with ``final`` on the epoch the run ends with
  (:class:`~inference.training.checkpoint.Checkpoints` saves there and every few epochs);
- ``non_finite(error)``: a step's loss or gradients were not finite: the progress of a good
  state it restored to go on from, or None to leave it to the next (without any, ``fit`` raises).

:class:`Callback` has every hook, doing nothing; a callback overrides those it needs.
"""

import logging
import time

from torch import nn

from models.capabilities import capabilities_of

from ..data import Dataset
from ..estimators import importance_sampling

__all__ = ["Callback", "TimeLimit", "ValidationElbo"]

log = logging.getLogger(__name__)


class Callback:
    """The hooks of :func:`~inference.training.loop.fit`, each a no-op (see the module)."""

    def epoch_end(self, row: dict, progress: dict) -> None:
        pass

    def stop(self, progress: dict) -> str | None:
        return None

    def checkpoint(self, progress: dict, final: bool) -> None:
        pass

    def non_finite(self, error: FloatingPointError) -> dict | None:
        return None


class ValidationElbo(Callback):
    """Each epoch's ``valid_elbo``: the mean single-sample ELBO of the validation points, in
    eval mode; its time goes to ``valid_seconds``. Not for a local guide, which has no
    parameters for the validation points yet, nor for data without them."""

    def __init__(self, model: nn.Module, guide: nn.Module, data: Dataset):
        self.model, self.guide, self.data = model, guide, data

    def epoch_end(self, row: dict, progress: dict) -> None:
        start = time.perf_counter()
        self.model.eval(), self.guide.eval()
        if self.data.valid.shape[0] > 0 and capabilities_of(self.guide).amortized:
            extra = self.data.batch_extra("valid", capabilities_of(self.model).batch_keys)
            elbo = importance_sampling(self.model, self.guide, self.data.valid, num_particles=1, extra=extra).elbo.mean().item()
            row["valid_elbo"] = elbo + self.data.log_jacobian  # in the data's units where it was standardized
        progress["valid_seconds"] += time.perf_counter() - start


class TimeLimit(Callback):
    """No new epoch once the SVI loop has run ``max_seconds`` (None: no limit)."""

    def __init__(self, max_seconds: float | None):
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds={max_seconds!r}: expected a positive number of seconds or None")
        self.max_seconds = max_seconds

    def stop(self, progress: dict) -> str | None:
        if self.max_seconds is not None and progress["seconds"] >= self.max_seconds:
            return f"stopping after epoch {progress['epoch']}: the time budget of {self.max_seconds} s is spent"
        return None
