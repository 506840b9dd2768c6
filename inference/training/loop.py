"""Training: stochastic variational inference with ``Trace_ELBO`` on in-memory data.

Each step evaluates ``Trace_ELBO``'s ``differentiable_loss(model, guide, x)`` (through the lean
path of :class:`~inference.training.objectives.LeanTrace_ELBO` when the guide is reparameterized) — the
same single-sample ELBO estimator and surrogate that ``pyro.infer.SVI`` with ``Trace_ELBO`` uses —
and steps one ordinary ``torch.optim`` optimizer over the parameters of both programs. That
skips SVI's per-parameter optimizers and param-store bookkeeping, a fixed cost per step that
weighs most on the small networks and batches VAEs train with.

The dataset is a tensor on the training device and a batch is an index slice of a random
permutation (in the semi-supervised setting with ``data.labeled_per_batch``, of the unlabelled
points, with labelled points added to each batch: :func:`epoch_batches`); the loss stays on
the device and is read back every ``log_every`` steps only (one boolean per step says whether
loss and gradients were finite; on CUDA, with a fused optimizer, that too waits on the device
for the next read: :class:`ElboStep`).
"""

import copy
import logging
import time

import torch
from torch import nn
from tqdm.auto import tqdm

import pyro
from pyro import poutine

from models.capabilities import capabilities_of

from ..data import Dataset
from ..estimators.programs import Extra
from .callbacks import Callback, ValidationElbo
from .objectives import LeanTrace_ELBO, kl_weight

__all__ = ["ElboStep", "NonFiniteError", "can_skip_on_device", "epoch_batches", "fit", "new_progress", "flush_subnormals", "steps_per_epoch"]

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
    """A step's loss or gradients were NaN or infinite; the parameters were left as they were.
    ``epoch`` and ``step`` say where, once the training loop knows."""

    epoch: int | None = None
    step: int | None = None
    later_steps: int | None = None  # a deferred check: the steps taken after the bad one


class ElboStep:
    """One gradient step on the negative ELBO of a batch.

    Before the optimizer steps, the loss and the gradients are checked: a non-finite value
    raises :class:`NonFiniteError` naming the parameters whose gradients are non-finite and the
    sites whose log-probabilities are, and the parameters stay as they were, so that the state
    can be saved or rolled back.

    The check reads one boolean back per step, which costs nothing on the CPU and stalls a GPU.
    ``deferred=True`` keeps it on the device instead: each step's verdict is and-ed into a flag
    that stays false from the first bad step on, the optimizer skips its update on the device
    while the flag is false (the ``found_inf`` of fused optimizers, which GradScaler uses too),
    the bad step's loss, per-parameter verdicts and batch are kept, and :meth:`check` reads the
    flag back (the training loop calls it every ``log_every`` steps and at the epoch's end) and
    raises the same error for that step. The parameters are then those from before the bad step,
    as with the per-step read.

    :param model: the model program.
    :param guide: the guide program.
    :param optimizer: a ``torch.optim.Optimizer`` over :func:`parameters_of` model and guide;
        with ``deferred``, a fused one (``fused=True``: Adam, AdamW, SGD).
    :param loss: an ELBO with a ``differentiable_loss`` (or, like ``RenyiELBO``, only a
        ``loss_and_grads``); ``LeanTrace_ELBO()`` (Trace_ELBO's estimate) by default.
    :param deferred: keep the finite check on the device until :meth:`check`.
    :param world: on several processes (:mod:`.distributed`), this one's place: each step's
        gradients and loss are summed over the ranks before the check and the update.
    :param capture: on CUDA, capture the step (forward, backward, the deferred check and the
        optimizer's update) as one CUDA graph per batch shape and KL weight, and replay it
        (:class:`~inference.training.capture.StepGraphs`); needs ``deferred`` and an optimizer
        prepared by :func:`~inference.training.capture.capturable`.
    """

    def __init__(
        self, model: nn.Module, guide: nn.Module, optimizer: torch.optim.Optimizer, loss=None, deferred: bool = False, capture: bool = False, world=None,
    ):
        self.model, self.guide, self.optimizer, self.world = model, guide, optimizer, world
        self.loss = loss if loss is not None else LeanTrace_ELBO()
        self.parameters = [p for group in optimizer.param_groups for p in group["params"]]
        if deferred and not can_skip_on_device(optimizer):
            raise ValueError(
                f"a deferred finite check needs an optimizer that skips a step on the device, a fused one; "
                f"{type(optimizer).__name__} is not (set optim.fused=true for Adam, AdamW or SGD, or train.finite_check=every_step)"
            )
        if capture and not deferred:
            raise ValueError("a captured step keeps its finite check on the device: capture=True needs deferred=True")
        self.deferred = deferred
        # the negative ELBO summed over the steps since the training loop zeroed it, added to in
        # place by each step (a captured one too), so that the loop reads it now and then only
        self.loss_sum = torch.zeros((), device=self.parameters[0].device)
        self.pending: list[tuple[torch.Tensor, Extra]] = []  # the batches since the last check
        if deferred:
            # updated in place only, so that a captured step's replays update the same tensors
            device = self.parameters[0].device
            self.no_grad = torch.zeros((), device=device)  # stands in for a parameter without a gradient
            self.healthy = torch.ones((), dtype=torch.bool, device=device)
            self.count = torch.zeros((), dtype=torch.long, device=device)  # steps since the last check
            self.found_inf = torch.zeros((), device=device)
            self.bad = {"index": torch.zeros((), dtype=torch.long, device=device), "loss": torch.zeros((), device=device),
                        "finite": torch.ones(len(self.parameters), dtype=torch.bool, device=device)}
        self.graphs = None
        if capture:
            from .capture import StepGraphs

            self.graphs = StepGraphs(self)

    def __call__(self, x: torch.Tensor, extra: Extra | None = None) -> torch.Tensor:
        """:param extra: the programs' batch keys for the points of ``x``.
        :returns: the batch's negative ELBO (summed over data points), a detached 0-dim tensor
            (of a captured step: the graph's output, which the next replay of that graph
            overwrites), also added to :attr:`loss_sum`."""
        extra = extra or {}
        if self.graphs is not None and not extra:
            loss = self.graphs.step(x)
            self.pending.append((x, extra))
            return loss
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.forward_backward(x, extra)
        if self.world is not None:  # the whole batch's gradients and loss, summed over the ranks' shares
            loss = self.world.summed(self.parameters, loss)
        self.loss_sum += loss
        if self.deferred:
            self.step_unless_unhealthy(loss)
            self.pending.append((x, extra))
            return loss
        grads = [p.grad for p in self.parameters if p.grad is not None]
        if not (torch.isfinite(loss) & torch.isfinite(torch.nn.utils.get_total_norm(grads))):
            finite = {id(p) for p in self.parameters if p.grad is None or torch.isfinite(p.grad).all()}
            raise NonFiniteError(self._diagnosis(x, extra, loss, finite))
        self.optimizer.step()
        return loss

    def forward_backward(self, x: torch.Tensor, extra: Extra) -> torch.Tensor:
        """The batch's loss, detached, with the gradients of the parameters computed."""
        if hasattr(self.loss, "differentiable_loss"):
            loss = self.loss.differentiable_loss(self.model, self.guide, x, **extra)
            loss.backward()
            return loss.detach()
        # it backpropagates its own surrogate and returns a float (a host sync)
        return torch.tensor(self.loss.loss_and_grads(self.model, self.guide, x, **extra), device=x.device)

    def step_unless_unhealthy(self, loss: torch.Tensor) -> None:
        """The deferred check and the optimizer's step: all on the device, no host read, every
        state tensor updated in place (a captured step replays this)."""
        grads = [self.no_grad if p.grad is None else p.grad for p in self.parameters]
        finite = torch.isfinite(torch.stack(torch._foreach_norm(grads)))
        first_bad = self.healthy & ~(torch.isfinite(loss) & finite.all())
        for key, value in (("index", self.count), ("loss", loss), ("finite", finite)):
            self.bad[key].copy_(torch.where(first_bad, value, self.bad[key]))
        self.healthy &= ~first_bad
        self.count += 1
        self.found_inf.copy_((~self.healthy).float())
        self.optimizer.found_inf = self.found_inf  # a fused optimizer leaves everything as it was
        self.optimizer.step()

    def check(self) -> None:
        """Read the deferred check back (one host read): raise :class:`NonFiniteError` for the
        first bad step since the last check, whose ``later_steps`` says how many steps came after
        it (they changed nothing). Nothing to do without ``deferred``."""
        if not self.deferred or not self.pending:
            return
        pending, self.pending = self.pending, []
        if bool(self.healthy):
            self.count.zero_()
            return
        index = int(self.bad["index"])
        finite = {id(p) for p, ok in zip(self.parameters, self.bad["finite"].tolist()) if ok}
        error = NonFiniteError(self._diagnosis(*pending[index], self.bad["loss"], finite))
        error.later_steps = len(pending) - 1 - index
        self.healthy.fill_(True), self.count.zero_(), self.found_inf.zero_()
        if self.graphs is not None:  # a rollback replaces the optimizer's state, which the graphs hold
            self.graphs.clear()
        raise error

    def _diagnosis(self, x: torch.Tensor, extra: Extra, loss: torch.Tensor, finite: set[int]) -> str:
        """What was non-finite: the loss, the parameters' gradients (those not in ``finite``, a
        set of ids), and, from a re-run of the batch (fresh samples, so a rare fault may not
        recur), the sites' log-probabilities."""
        named = [(f"{prefix}.{name}", p) for prefix, module in (("model", self.model), ("guide", self.guide)) for name, p in module.named_parameters()]
        grads = [name for name, p in named if id(p) not in finite]
        parts = [f"the loss was {loss.item()}" if not torch.isfinite(loss) else "the loss was finite"]
        parts.append(f"non-finite gradients of {', '.join(grads)}" if grads else "no parameter's gradient was non-finite")
        with torch.no_grad(), pyro.validation_enabled(False):
            guide_trace = poutine.trace(self.guide).get_trace(x, **extra)
            model_trace = poutine.trace(poutine.replay(self.model, trace=guide_trace)).get_trace(x, **extra)
            sites = [
                f"{'guide' if trace is guide_trace else 'model'} site {name!r}"
                for trace in (model_trace, guide_trace)
                for name, site in trace.nodes.items()
                if site["type"] == "sample" and not torch.isfinite(site["fn"].log_prob(site["value"])).all()
            ]
        if sites:
            parts.append(f"non-finite log-probabilities at {', '.join(sites)}")
        return "; ".join(parts)


def can_skip_on_device(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` can skip a step on the device (fused optimizers take GradScaler's
    ``found_inf``), what the deferred finite check needs."""
    return bool(optimizer.defaults.get("fused"))


def flush_subnormals() -> bool:
    """Flush subnormal floats (below 1.2e-38 in float32) to zero on the CPU, for the rest of the
    process; returns whether the CPU can (x86 with SSE3). The entry points call it first thing.

    Values that small arise as training goes on: Adam's moment estimates of a weight whose
    gradient is exactly zero (a ReLU unit that no longer fires) decay geometrically into them,
    and x86 arithmetic on them is many times slower, so that epochs slow down as training goes
    on. Nothing a float32 VAE computes needs values that small.

    The mode is per thread, and the worker threads of torch's CPU operators take it from the
    thread that starts them, once: called after they have started, it reaches the calling
    thread alone. Call it before any large tensor operation of the process."""
    return torch.set_flush_denormal(True)


def new_progress() -> dict:
    """The training loop's position before the first epoch (what checkpoints call progress)."""
    return {"epoch": 0, "steps": 0, "seconds": 0.0, "valid_seconds": 0.0, "rollbacks": [], "curve": []}


def fit(
    model: nn.Module,
    guide: nn.Module,
    data: Dataset,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    log_every: int = 50,
    progress: bool = True,
    loss=None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    start: dict | None = None,
    callbacks: list[Callback] | None = None,
    deferred_check: bool | None = None,
    cuda_graphs: bool = False,
    world=None,
) -> dict:
    """Fit model and guide to ``data.train`` by SVI, with the behaviours of ``callbacks``
    beyond the loop (by default the validation ELBO of each epoch alone). The programs get the
    batch keys they declare (``Capabilities.batch_keys``) from ``data``, sliced with x.

    Call it with model, guide and data already on the training device and the RNG seeded (or,
    to continue a run, restored with :func:`inference.training.checkpoint.restore`). The
    optimizer holds what is trained: :func:`~inference.training.parameters.parameters_of` the
    modules, after :func:`~inference.training.parameters.adopt_store_parameters` for programs
    that keep parameters in Pyro's param store, which ``fit`` leaves as it is.

    :param optimizer: a ``torch.optim.Optimizer`` over :func:`parameters_of` model and guide.
    :param loss: an ELBO with a ``differentiable_loss`` (``LeanTrace_ELBO()`` when ``None``).
    :param scheduler: a learning-rate scheduler of ``optimizer``, stepped after every epoch.
    :param start: the ``progress`` to continue from (a checkpoint's); a fresh run when ``None``.
    :param callbacks: :class:`~inference.training.callbacks.Callback` objects, called in this
        order at each hook: the validation ELBO (:class:`ValidationElbo`), a time limit
        (:class:`TimeLimit`), checkpoints and what happens at a non-finite step
        (:class:`~inference.training.checkpoint.Checkpoints`), experiment trackers; ``None``:
        ``[ValidationElbo(model, guide, data)]``. A non-finite step that no callback restores
        from raises :class:`NonFiniteError`, naming epoch, step and culprits.
    :param deferred_check: keep the finite check of each step on the device and read it every
        ``log_every`` steps (:class:`ElboStep`); ``None``: on CUDA with a fused optimizer.
    :param cuda_graphs: capture each step as a CUDA graph and replay it (:mod:`.capture`); the
        caller has checked that it can (:func:`~inference.training.capture.capture_problem`) and
        made the optimizer :func:`~inference.training.capture.capturable`.
    :param world: on several processes (:class:`~inference.training.distributed.World`), this
        one's place: it trains on its share of every batch, with the randomness of
        :meth:`~inference.training.distributed.World.epoch_streams`, and stops when rank 0 does.
    :returns: the progress, a training summary: ``epoch`` and ``epochs`` (run), ``steps``,
        ``seconds`` (the SVI loop alone), ``valid_seconds``, ``device``, ``rollbacks``, and
        ``curve``, a list of per-epoch ``{"epoch", "train_elbo", "valid_elbo", "seconds", "lr",
        "kl_weight"}``, ELBOs in mean nats per data point, the learning rate and KL weight those
        of the epoch's steps.
    """
    if deferred_check is None:  # the read per step costs nothing on the CPU, and stalls a GPU
        deferred_check = data.train.device.type == "cuda" and can_skip_on_device(optimizer)
    callbacks = [ValidationElbo(model, guide, data)] if callbacks is None else callbacks
    step = ElboStep(model, guide, optimizer, loss, deferred=deferred_check or cuda_graphs, capture=cuda_graphs, world=world)
    steps = steps_per_epoch(data, batch_size)
    state = copy.deepcopy(start) if start else new_progress()
    # disable=None: a bar on a terminal, none in logs and CI; the epoch lines go to the log instead
    bar = tqdm(total=epochs * steps, initial=state["steps"], desc="SVI", unit="step", disable=None if progress else True, leave=False)
    report_every = max(1, epochs // 10)
    while state["epoch"] < epochs:
        epoch = state["epoch"] + 1
        try:
            row = _epoch(step, data, epoch, batch_size, log_every, state, bar, world)
        except NonFiniteError as e:
            # raised by the bad step itself, before it was counted, or by a deferred check after it
            bad_step = state["steps"] + 1 if e.later_steps is None else state["steps"] - e.later_steps
            error = NonFiniteError(f"a non-finite value in training at epoch {epoch}, step {bad_step}: {e}")
            error.epoch, error.step = epoch, bad_step
            state = next((restored for callback in callbacks if (restored := callback.non_finite(error)) is not None), None)
            if state is None:
                raise error from None
            bar.reset(total=epochs * steps), bar.update(state["steps"])
            continue
        if scheduler is not None:
            scheduler.step()
        for callback in callbacks:
            callback.epoch_end(row, state)
        state["curve"].append(row)
        state["epoch"] = epoch
        if progress and (epoch % report_every == 0 or epoch == epochs):
            valid = "" if row["valid_elbo"] is None else f"  valid ELBO {row['valid_elbo']:10.3f}"
            log.info(f"epoch {epoch:>4}  train ELBO {row['train_elbo']:10.3f}{valid}")
        stop = next((reason for callback in callbacks if (reason := callback.stop(state))), None) if epoch < epochs else None
        if world is not None:  # a time limit is read on each rank's clock: rank 0's decides
            stop = world.agreed(stop)
        for callback in callbacks:
            callback.checkpoint(state, final=epoch == epochs or stop is not None)
        if stop:
            log.info(stop)
            break
    bar.close()
    model.eval(), guide.eval()
    return {**copy.deepcopy(state), "epochs": len(state["curve"]), "device": str(data.train.device)}


def labelled_per_batch(data: Dataset, batch_size: int) -> int:
    """How many labelled points each training batch of ``batch_size`` holds: ``data.labeled_per_batch``,
    where ``"auto"`` is the share of labelled points among the training points times the batch
    size, rounded (at least 1), so that the labelled points come back about once an epoch, as
    the unlabelled ones do. Refuses a number that leaves no room for unlabelled points."""
    k = data.labeled_per_batch
    if k == "auto":
        labelled = int(data.batch_extra("train", ("mask",))["mask"].sum())
        k = max(1, round(labelled * batch_size / data.train.shape[0]))
    if k and k >= batch_size:
        raise ValueError(f"data.labeled_per_batch={k} must be fewer than the batch size {batch_size}, to leave room for unlabelled points")
    return k


def steps_per_epoch(data: Dataset, batch_size: int) -> int:
    """How many batches :func:`epoch_batches` cuts an epoch into; refuses a ``batch_size`` that
    leaves no room for unlabelled points beside ``data.labeled_per_batch`` (what ``fit`` asks first)."""
    k = labelled_per_batch(data, batch_size)
    if not k:
        return -(-data.train.shape[0] // batch_size)
    unlabelled = int((~data.batch_extra("train", ("mask",))["mask"]).sum())
    return -(-unlabelled // (batch_size - k))


def epoch_batches(data: Dataset, batch_size: int, generator: torch.Generator | None = None, min_size: int = 1) -> list[torch.Tensor]:
    """The training points of each batch of one epoch, as index tensors: a random permutation
    cut into slices of ``batch_size``. With ``data.labeled_per_batch = k``, one pass over the
    unlabelled points in slices of ``batch_size − k``, each joined by the next k labelled points
    of a stream that cycles through the labelled set, reshuffled at every cycle: the labelled
    points are seen many times an epoch, the unlabelled once.

    :param generator: the permutations' stream (a CPU generator; None: the global RNG).
    :param min_size: a last batch smaller than this joins the one before (on several processes,
        so that every rank has a point of every batch)."""
    N, k, device = data.train.shape[0], labelled_per_batch(data, batch_size), data.train.device

    def permutation(n: int) -> torch.Tensor:
        return torch.randperm(n, device=device) if generator is None else torch.randperm(n, generator=generator).to(device)

    if not k:
        batches = list(permutation(N).split(batch_size))
    else:
        mask = data.batch_extra("train", ("mask",))["mask"]
        unlabelled, labelled = torch.nonzero(~mask).squeeze(1), torch.nonzero(mask).squeeze(1)
        slices = unlabelled[permutation(len(unlabelled))].split(batch_size - k)
        cycles = -(-len(slices) * k // len(labelled))
        stream = torch.cat([labelled[permutation(len(labelled))] for _ in range(cycles)])
        batches = [torch.cat([u, stream[i * k : (i + 1) * k]]) for i, u in enumerate(slices)]
    if len(batches) > 1 and len(batches[-1]) < min_size:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def _epoch(step: ElboStep, data: Dataset, epoch: int, batch_size: int, log_every: int, state: dict, bar, world=None) -> dict:
    """One pass over the training data; updates ``state``'s steps and seconds, returns the curve row."""
    step.model.train(), step.guide.train()
    if hasattr(step.loss, "set_epoch"):  # a KL warm-up follows the epoch
        step.loss.set_epoch(epoch - 1)
    start = time.perf_counter()
    generator = world.epoch_streams(epoch) if world is not None else None
    x = data.train_epoch()
    extra = data.batch_extra("train", capabilities_of(step.model).batch_keys)
    # the epoch's batches gathered in one operation, then taken as views: a gather per step
    # costs a launch and Python, which a captured step's replay would otherwise wait on
    batches = epoch_batches(data, batch_size, generator, min_size=world.size if world is not None else 1)
    points = [len(batch) for batch in batches]  # of the whole batch: the loss is summed over the ranks
    if world is not None:
        batches = [world.share(batch) for batch in batches]
    order, sizes = torch.cat(batches), [len(batch) for batch in batches]
    xs, extras = x[order].split(sizes), {key: value[order].split(sizes) for key, value in extra.items()}
    step.loss_sum.zero_()
    seen = 0
    for i, x_batch in enumerate(xs):
        step(x_batch, {key: parts[i] for key, parts in extras.items()})
        state["steps"] += 1
        seen += points[i]
        if state["steps"] % log_every == 0:  # the loss (and a deferred finite check) is read back only now and then
            step.check()
            bar.set_postfix(elbo=f"{-step.loss_sum.item() / seen:.2f}")
            bar.update(log_every)
    step.check()
    seconds = time.perf_counter() - start
    state["seconds"] += seconds
    # per point seen: with labeled_per_batch the labelled points count as often as they were seen;
    # in the data's units where it was standardized (data.log_jacobian)
    return {
        "epoch": epoch, "train_elbo": -step.loss_sum.item() / seen + data.log_jacobian, "valid_elbo": None, "seconds": seconds,
        "lr": float(step.optimizer.param_groups[0]["lr"]), "kl_weight": kl_weight(step.loss),
    }
