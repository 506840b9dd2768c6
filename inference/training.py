"""Training: stochastic variational inference with ``Trace_ELBO`` on in-memory data.

Each step evaluates ``Trace_ELBO().differentiable_loss(model, guide, x)`` — the same
single-sample ELBO estimator and surrogate that ``pyro.infer.SVI`` with ``Trace_ELBO`` uses —
and steps one ordinary ``torch.optim`` optimizer over the parameters of both programs. That
skips SVI's per-parameter optimizers and param-store bookkeeping, which cost more than the
networks themselves at the batch sizes VAEs train with (see BENCHMARKS.md).

The dataset is a tensor on the training device and a batch is an index slice of a random
permutation; the loss stays on the device and is read back every ``log_every`` steps only.
"""

import logging
import time
import torch
from torch import nn
from tqdm.auto import tqdm

import pyro
from pyro.infer import Trace_ELBO

from .data import Dataset
from .estimators import importance_sampling

__all__ = ["ElboStep", "fit", "parameters_of"]

log = logging.getLogger(__name__)


def parameters_of(*modules: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters of all modules, each once (a prior may share the encoder)."""
    unique = {id(p): p for m in modules for p in m.parameters() if p.requires_grad}
    return list(unique.values())


class ElboStep:
    """One gradient step on the negative ELBO of a batch.

    :param model: the model program.
    :param guide: the guide program.
    :param optimizer: a ``torch.optim.Optimizer`` over :func:`parameters_of` model and guide.
    :param loss: an ELBO with a ``differentiable_loss`` (``Trace_ELBO()`` when ``None``).
    :param scheduler: a learning-rate scheduler of ``optimizer``, stepped after every epoch.
    :param max_seconds: a time budget: no new epoch starts once the SVI loop has run this long.
    :param loss: an ELBO with a ``differentiable_loss`` (or, like ``RenyiELBO``, only a
        ``loss_and_grads``); ``Trace_ELBO()`` by default.
    """

    def __init__(self, model: nn.Module, guide: nn.Module, optimizer: torch.optim.Optimizer, loss=None):
        self.model, self.guide, self.optimizer = model, guide, optimizer
        self.loss = loss if loss is not None else Trace_ELBO()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """:returns: the batch's negative ELBO (summed over data points), a detached 0-dim tensor."""
        self.optimizer.zero_grad(set_to_none=True)
        if hasattr(self.loss, "differentiable_loss"):
            loss = self.loss.differentiable_loss(self.model, self.guide, x)
            loss.backward()
            loss = loss.detach()
        else:  # it backpropagates its own surrogate and returns a float (a host sync)
            loss = torch.tensor(self.loss.loss_and_grads(self.model, self.guide, x), device=x.device)
        self.optimizer.step()
        return loss


def _check_finite(loss: torch.Tensor, epoch: int, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"training diverged: the loss became {loss.item()} by epoch {epoch}, step {step}. "
            "Lower the learning rate (optim.lr=...) or check the data for extreme values"
        )


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
    max_seconds: float | None = None,
) -> dict:
    """Fit model and guide to ``data.train`` by SVI, computing the validation ELBO each epoch
    (for amortized guides: a local guide has no parameters for the validation points yet).

    Call it with model, guide and data already on the training device and the RNG seeded.

    :param optimizer: a ``torch.optim.Optimizer`` over :func:`parameters_of` model and guide.
    :param loss: an ELBO with a ``differentiable_loss`` (``Trace_ELBO()`` when ``None``).
    :param scheduler: a learning-rate scheduler of ``optimizer``, stepped after every epoch.
    :param max_seconds: a time budget: no new epoch starts once the SVI loop has run this long.
    :returns: the training summary: ``epochs`` (run), ``steps``, ``seconds`` (the SVI loop alone),
        ``valid_seconds``, ``device``, and ``curve``, a list of per-epoch
        ``{"epoch", "train_elbo", "valid_elbo", "seconds"}``, ELBOs in mean nats per data point.
    """
    pyro.clear_param_store()  # the modules own their parameters; drop stale copies of earlier fits
    step = ElboStep(model, guide, optimizer, loss)
    N = data.train.shape[0]
    steps_per_epoch = -(-N // batch_size)
    curve, seconds, valid_seconds, steps = [], 0.0, 0.0, 0
    # disable=None: a bar on a terminal, none in logs and CI; the epoch lines go to the log instead
    bar = tqdm(total=epochs * steps_per_epoch, desc="SVI", unit="step", disable=None if progress else True, leave=False)
    report_every = max(1, epochs // 10)
    for epoch in range(1, epochs + 1):
        model.train(), guide.train()
        if hasattr(step.loss, "set_epoch"):  # a KL warm-up follows the epoch
            step.loss.set_epoch(epoch - 1)
        start = time.perf_counter()
        x = data.train_epoch()
        order = torch.randperm(N, device=x.device)
        epoch_loss = torch.zeros((), device=x.device)
        for i in range(steps_per_epoch):
            epoch_loss += step(x[order[i * batch_size : (i + 1) * batch_size]])
            steps += 1
            if steps % log_every == 0:  # the only host sync inside an epoch
                _check_finite(epoch_loss, epoch, steps)
                bar.set_postfix(elbo=f"{-epoch_loss.item() / min(N, (i + 1) * batch_size):.2f}")
                bar.update(log_every)
        train_elbo = -epoch_loss.item() / N
        if scheduler is not None:
            scheduler.step()
        epoch_seconds = time.perf_counter() - start
        seconds += epoch_seconds
        _check_finite(epoch_loss, epoch, steps)

        start = time.perf_counter()
        model.eval(), guide.eval()
        valid_elbo = None
        if data.valid.shape[0] > 0 and getattr(guide, "amortized", True):  # a local guide knows no valid points yet
            valid_elbo = importance_sampling(model, guide, data.valid, num_particles=1).elbo.mean().item()
        valid_seconds += time.perf_counter() - start
        curve.append({"epoch": epoch, "train_elbo": train_elbo, "valid_elbo": valid_elbo, "seconds": epoch_seconds})
        if progress and (epoch % report_every == 0 or epoch == epochs):
            valid = "" if valid_elbo is None else f"  valid ELBO {valid_elbo:10.3f}"
            log.info(f"epoch {epoch:>4}  train ELBO {train_elbo:10.3f}{valid}")
        if max_seconds is not None and seconds >= max_seconds and epoch < epochs:
            log.info(f"stopping after epoch {epoch}: the time budget of {max_seconds} s is spent")
            break
    bar.close()
    model.eval(), guide.eval()
    return {
        "epochs": len(curve),
        "steps": steps,
        "seconds": seconds,
        "valid_seconds": valid_seconds,
        "device": str(data.train.device),
        "curve": curve,
    }
