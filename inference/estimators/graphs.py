"""A seeded estimate's groups of points, each drawn from its own seed, replayed as CUDA graphs.

On a GPU the estimator's Python (Pyro's effect handlers, the traces of guide and model, one
pass after another) costs more host time than the device spends on the arithmetic, and the
device waits. A seeded estimate (``importance_sampling(..., seed=...)``, what runs use) does the
same work for every group of points: the guide's draws for the group and the model's passes
over them. With ``importance_sampling(..., cuda_graphs=True)`` (what runs pass on CUDA,
``evaluation.cuda_graphs``), :class:`SeededGroups` runs the first group of each shape eagerly, captures
the second with ``torch.cuda.graph`` and replays the graph for the rest: one launch a group.

A graph reads the CUDA generator's seed when it is replayed (its random operations draw from
the seed and offset the generator holds then, as eager operations do), so seeding before each
replay gives the group the numbers an eager run from that seed gives.

A program that cannot run inside a capture (one that reads a value back, say) is run eagerly
instead, with one log line: the numbers are the same, only slower.
"""

import logging
from collections.abc import Callable
from contextlib import contextmanager

import torch

from .programs import Extra

__all__ = ["SeededGroups", "cannot_capture", "side_stream"]

log = logging.getLogger(__name__)

GroupFn = Callable[[torch.Tensor, Extra], torch.Tensor]


# What CUDA and torch say of an operation that a stream capture does not allow (a read back to
# the host, a synchronization, a generator query, a blocking copy): the program runs, only not
# inside a graph. Any other error, out of memory first of all, is not about capture.
_CAPTURE_REFUSALS = ("captur", "cudaErrorStreamCapture")


def cannot_capture(error: RuntimeError) -> bool:
    """Whether ``error``, raised inside ``torch.cuda.graph``, says that the operations cannot be
    captured (so that running them eagerly gives the same numbers), rather than that they failed."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return False
    return any(word in str(error) for word in _CAPTURE_REFUSALS)


@contextmanager
def side_stream():
    """Run the block on a side stream ordered after the current stream's work, and order the
    current stream's later work after it: where torch.cuda.graph asks the runs before a capture
    to go (the training step's warm-up too)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        yield
    torch.cuda.current_stream().wait_stream(side)


class SeededGroups:
    """``groups(seed, x, extra)``: ``fn(x, extra)`` with the global RNG seeded by ``seed``
    first; with ``cuda_graphs``, on CUDA, captured once per shape of its inputs and replayed.
    The result is a new tensor (a graph's output is copied before the next replay)."""

    def __init__(self, fn: GroupFn, cuda_graphs: bool):
        self.fn, self.cuda_graphs = fn, cuda_graphs
        self.entries: dict[tuple, dict] = {}

    def __call__(self, seed: int, x: torch.Tensor, extra: Extra) -> torch.Tensor:
        if not self.cuda_graphs:
            torch.manual_seed(seed)
            return self.fn(x, extra)
        key = (tuple(x.shape), x.dtype, tuple((name, tuple(v.shape), v.dtype) for name, v in extra.items()))
        entry = self.entries.get(key)
        if entry is None:  # the first group of this shape: a real one, and the warm-up a capture asks for
            self.entries[key] = {}
            return self._eager(seed, x, extra)
        if "graph" not in entry and not self._capture(entry, x, extra):
            return self(seed, x, extra)  # eager from now on
        torch.cuda.manual_seed(seed)  # read by the graph's random operations at the replay
        entry["x"].copy_(x)
        for name, value in extra.items():
            entry["extra"][name].copy_(value)
        entry["graph"].replay()
        return entry["out"].clone()

    def _eager(self, seed: int, x: torch.Tensor, extra: Extra) -> torch.Tensor:
        """``fn`` on a side stream, as torch.cuda.graph asks of the runs before a capture."""
        with side_stream():
            torch.manual_seed(seed)
            out = self.fn(x, extra)
        return out

    def _capture(self, entry: dict, x: torch.Tensor, extra: Extra) -> bool:
        """Capture ``fn`` on static copies of the inputs; False (and eager from now on) where
        the program cannot be captured."""
        entry["x"], entry["extra"] = x.clone(), {name: value.clone() for name, value in extra.items()}
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                entry["out"] = self.fn(entry["x"], entry["extra"])
        except RuntimeError as error:
            if not cannot_capture(error):  # out of memory, a bug of the programs: the user's to see
                raise
            log.info(f"the estimator runs without CUDA graphs: the programs cannot be captured ({str(error).splitlines()[0]})")
            self.cuda_graphs = False
            self.entries.clear()
            return False
        entry["graph"] = graph
        return True
