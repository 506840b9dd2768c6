"""Memory of the estimators: measure the peak bytes of tensors a computation allocates, and size
the estimator's passes so that its peak stays under ``evaluation.memory_budget_mb``.

:class:`PeakTensorMemory` sees every tensor that every operation creates (a
``TorchDispatchMode``) and counts its storage until the storage is freed, on any device, so
the peak is measured, not guessed. :func:`pairs_within` runs two small probe passes of the
estimator under it, fits peak = fixed + per-pair · pairs, and returns how many particle ×
data-point pairs one pass may hold.
"""

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .importance import log_importance_weights
from .programs import Extra, particle_dim, rng_kept, sliced

__all__ = ["PeakTensorMemory", "pairs_within"]


class PeakTensorMemory(TorchDispatchMode):
    """``with PeakTensorMemory() as m: ...``; then ``m.peak`` is the most bytes of tensor storage
    allocated inside the block and alive at once (storages that existed before do not count)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key not in self._seen and storage.nbytes():
                    self._seen.add(key)
                    self.live += storage.nbytes()
                    weakref.finalize(storage, self._free, key, storage.nbytes())
        self.peak = max(self.peak, self.live)
        return out


def pairs_within(model, guide, x: torch.Tensor, budget_mb: float, extra: Extra | None = None) -> int:
    """How many particle × data-point pairs one pass of the estimator may evaluate so that its
    peak tensor memory stays under ``budget_mb``: measured on probes of 64 and 256 pairs of the
    first data point (``extra``: the programs' batch keys), and extrapolated linearly, with a
    margin of a quarter. The probes leave the global RNG as it was, so that the estimates that
    follow draw the same numbers whatever the budget."""
    first, first_extra = x[:1], sliced(extra, slice(0, 1))
    peaks, dim = [], particle_dim(model, guide, first, first_extra)  # found outside: a pass does not repeat it
    for pairs in (64, 256):
        with torch.no_grad(), rng_kept(x.device), PeakTensorMemory() as memory:
            log_importance_weights(model, guide, first, pairs, dim, first_extra)
        peaks.append(memory.peak)
    per_pair = max((peaks[1] - peaks[0]) / 192, 1.0)
    fixed = max(peaks[0] - 64 * per_pair, 0.0)
    budget = 0.75 * budget_mb * 2**20
    if budget <= fixed + per_pair:
        raise ValueError(
            f"evaluation.memory_budget_mb={budget_mb} is below what one importance sample of one point needs "
            f"(about {(fixed + per_pair) / 2**20 / 0.75:.2f} MB); raise it"
        )
    return int((budget - fixed) // per_pair)
