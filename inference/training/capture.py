"""The training step captured as a CUDA graph (``train.cuda_graphs``).

On a GPU a VAE of the sizes users train is bound by kernel launches and host work, not
arithmetic. ``objective=graph_trace_elbo`` already replays the loss as a graph of tensor
operations (a run on CUDA records ``objective=trace_elbo`` so, the same loss and gradients, to
capture it: ``KLWeighted.recorded``); here that replay, the backward pass, the deferred finite check and the fused
optimizer's update are captured once per batch shape (and KL weight, which changes the recorded
programs) with ``torch.cuda.graph`` and replayed as one launch a step. Random draws are graph
operations and draw anew at every replay (CUDA graphs advance the generator's offset).

What capture needs, and this module arranges or refuses (:func:`capture_problem`):

- an optimizer that can run inside a graph: fused Adam or AdamW, made ``capturable``, whose
  update a found-inf flag on the device skips (Adagrad and unfused optimizers are refused);
- the learning rate as a tensor updated in place (a float would be baked into the graph, and
  the ``iwae`` schedule and a rollback change it): :func:`capturable` makes it one, and the
  schedulers and the rollback fill it in place;
- the finite check kept on the device (:class:`~inference.training.loop.ElboStep` with
  ``deferred``), updated in place;
- a few real steps before the capture, on a side stream (what ``torch.cuda.graph`` asks for, and
  what records the loss's graph): they count as steps like any other;
- programs the recorded objective can replay (not a guide that takes gradients inside), with
  validation off.

A rollback replaces the optimizer's state tensors, which a graph holds by address, so the
graphs are dropped when a non-finite step is reported and captured anew after.
"""

from collections import OrderedDict

import torch

from pyro.infer.util import is_validation_enabled

from ..estimators.graphs import side_stream
from .objectives import GraphTrace_ELBO, LeanTrace_ELBO, kl_weight

__all__ = ["CAPTURABLE_OPTIMIZERS", "StepGraphs", "capturable", "capture_problem"]

CAPTURABLE_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)
WARMUP_STEPS = 3  # real steps before a capture, as torch.cuda.graph's documentation does
MAX_GRAPHS = 4  # the most recently used are kept (a KL warm-up captures one per epoch)
# Validation reads values back on the host at every step, and the recorded objective leaves it to
# Pyro's unrecorded path: a capture then fails inside CUDA ("operation not permitted when stream
# is capturing"). Pyro's default is on, so a script that calls fit() meets this too.
VALIDATION_PROBLEM = (
    "validation is on (train.validate=true, or Pyro's default outside a run): its checks read values back every step, "
    "which a captured step cannot; use train.validate=false (pyro.enable_validation(False) in a script)"
)


def capture_problem(
    device: torch.device, loss, optimizer: torch.optim.Optimizer, finite_check: str, objective: str = "", programs: str | None = None
) -> str | None:
    """Why the step cannot be captured, naming the key that decides and what works; ``None`` if
    it can. ``objective``: the config's name of ``loss``; ``programs``: why a program cannot be
    recorded, if it cannot. The device comes last, so that on a CPU the other reasons are still
    named."""
    inner = getattr(loss, "loss", loss)  # KLWeighted wraps the ELBO
    if isinstance(inner, LeanTrace_ELBO) and inner.num_particles != 1:
        return f"objective.num_particles={inner.num_particles}: only a one-particle ELBO is recorded as a graph, which a capture needs; use objective.num_particles=1"
    if not isinstance(inner, GraphTrace_ELBO):
        return f"objective={objective or type(inner).__name__} is not recorded as a graph, which a capture needs; use objective=trace_elbo"
    if is_validation_enabled():
        return VALIDATION_PROBLEM
    if not isinstance(optimizer, CAPTURABLE_OPTIMIZERS) or not optimizer.defaults.get("fused"):
        return f"{type(optimizer).__name__} (fused={optimizer.defaults.get('fused')}) cannot step inside a CUDA graph; use optim=adam with optim.fused=true"
    if finite_check == "every_step":
        return "train.finite_check=every_step reads a flag back every step, which a replayed graph cannot; use train.finite_check=auto or deferred"
    if programs:
        return programs
    if device.type != "cuda":
        return f"CUDA graphs need CUDA, and the run trains on {device}; use train.cuda_graphs=auto (captures on CUDA only) or false"
    return None


def capturable(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Make ``optimizer`` safe to step inside a CUDA graph: ``capturable``, with each group's
    learning rate a tensor on the parameters' device, which schedulers and the rollback then
    fill in place. Returns it."""
    for group in optimizer.param_groups:
        device = group["params"][0].device
        group["capturable"] = True
        group["lr"] = torch.as_tensor(group["lr"], dtype=torch.float32, device=device).clone()
    return optimizer


class StepGraphs:
    """The captured steps of an :class:`~inference.training.loop.ElboStep`, one per batch shape,
    dtype, train/eval modes and KL weight; :meth:`step` takes the real warm-up steps, then
    captures, then replays."""

    def __init__(self, step):
        if is_validation_enabled():
            raise ValueError(f"a captured step cannot run with validation on: {VALIDATION_PROBLEM}")
        self.owner = step
        self.graphs: OrderedDict = OrderedDict()

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One step on batch ``x``; returns its loss (a captured graph's output)."""
        owner = self.owner
        key = (tuple(x.shape), x.dtype, owner.model.training, owner.guide.training, kl_weight(owner.loss))
        entry = self.graphs.setdefault(key, {"warm": 0})
        self.graphs.move_to_end(key)
        while len(self.graphs) > MAX_GRAPHS:
            self.graphs.popitem(last=False)
        if "graph" not in entry:
            if entry["warm"] < WARMUP_STEPS:
                entry["warm"] += 1
                return self._eager(x)
            self._capture(entry, x)
        entry["x"].copy_(x)
        entry["graph"].replay()
        return entry["loss"]

    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        """A real step on a side stream: the warm-up before a capture."""
        owner = self.owner
        with side_stream():
            owner.optimizer.zero_grad(set_to_none=True)
            loss = owner.forward_backward(x, {})
            owner.loss_sum += loss
            owner.step_unless_unhealthy(loss)
        return loss

    def _capture(self, entry: dict, x: torch.Tensor) -> None:
        """Capture forward, backward, check and update on a static copy of ``x``. Capture runs
        no kernel: the caller replays the graph for this batch."""
        owner = self.owner
        entry["x"] = x.clone()
        owner.optimizer.zero_grad(set_to_none=True)  # the graph allocates the gradients it writes
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss = owner.forward_backward(entry["x"], {})
            owner.loss_sum += loss  # in place: the replays add to the same tensor
            owner.step_unless_unhealthy(loss)
        entry["graph"], entry["loss"] = graph, loss

    def clear(self) -> None:
        self.graphs.clear()
