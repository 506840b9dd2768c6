"""What a checkpoint holds, how its file is written and read, and how training continues from one exactly.

A checkpoint is a plain dict of tensors and containers (it loads with ``weights_only=True``):
the model, guide, optimizer and scheduler states; ``progress``, the training loop's position
(epoch, steps, the curve so far, seconds, rollbacks); every RNG state the run draws from (torch,
CUDA where used, numpy, Python); and the run's config. Restoring all of it at an epoch boundary
makes the epochs after it draw the same batches and noise as an uninterrupted run would.
"""

import copy
import logging
import os
import pickle
import random
import re
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .callbacks import Callback

__all__ = [
    "CHECKPOINT",
    "Checkpoints",
    "atomic_write",
    "capture",
    "config_differences",
    "load_checkpoint",
    "restore",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

CHECKPOINT = "checkpoint.pt"

log = logging.getLogger(__name__)


def atomic_write(path: Path, write) -> None:
    """Write a file through ``write(f)`` atomically (a temporary file in the same folder, then a
    rename), so that a run killed mid-write leaves the previous file whole, not a truncated one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_checkpoint(run_dir: str | Path, state: dict) -> Path:
    """Write ``checkpoint.pt`` atomically: the previous one stays whole until the new one is."""
    path = Path(run_dir) / CHECKPOINT
    atomic_write(path, lambda f: torch.save(state, f))
    return path


def load_checkpoint(run_dir: str | Path, map_location=None) -> dict:
    """Read ``checkpoint.pt`` with ``weights_only=True``: tensors and plain containers only. A
    checkpoint that carries pickled code is refused with a ValueError, and its code never runs."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train.resume=true needs a run directory that holds one")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        named = re.search(r"GLOBAL (\S+)", str(e))
        reason = f"it refers to {named.group(1)}" if named else "weights_only refused it"
        raise ValueError(
            f"{path} was refused: it holds pickled objects other than tensors and plain containers, "
            f"which could run code on loading ({reason}). Only load checkpoints written by this suite"
        ) from None
    except (RuntimeError, EOFError) as e:
        raise ValueError(f"{path} is not a readable checkpoint ({e}); it is damaged or not a checkpoint") from None


def rng_state() -> dict:
    """The states of every RNG a run draws from, as tensors and plain lists."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position, "has_gauss": has_gauss, "cached": cached},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    # RNG states are byte tensors on the CPU; a checkpoint loaded onto a CUDA run's device
    # (map_location) brings them there, where torch refuses them
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["position"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def capture(model: nn.Module, guide: nn.Module, optimizer, scheduler, progress: dict, config: dict) -> dict:
    """A checkpoint of the run as it is now (a deep copy: training may go on)."""
    return copy.deepcopy(
        {
            "model": model.state_dict(),
            "guide": guide.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "progress": progress,
            "rng": rng_state(),
            "config": config,
        }
    )


def restore(state: dict, model: nn.Module, guide: nn.Module, optimizer, scheduler) -> dict:
    """Load a checkpoint into the run's objects and RNGs; returns a copy of its ``progress``."""
    model.load_state_dict(state["model"])
    guide.load_state_dict(state["guide"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return copy.deepcopy(state["progress"])


def _flat(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: tree}


def config_differences(saved: dict, current: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """The keys whose values differ between two configs (as plain dicts), as ``key: a → b``;
    ``ignore`` names keys, or whole sections by a prefix ending in a dot (``"evaluation."``)."""
    a, b = _flat(saved), _flat(current)

    def ignored(key: str) -> bool:
        return any(key == i or (i.endswith(".") and key.startswith(i)) for i in ignore)

    return [f"{k}: {a.get(k, '<absent>')!r} → {b.get(k, '<absent>')!r}" for k in sorted(a.keys() | b.keys()) if not ignored(k) and a.get(k, "<absent>") != b.get(k, "<absent>")]


class Checkpoints(Callback):
    """The run's last good state: written to the run directory and kept in memory, so that a
    non-finite step can be met by stopping (naming the checkpoint) or by rolling back to it.
    As a callback of :func:`~inference.training.loop.fit`: saved every ``every`` epochs and at
    the run's last, and what a non-finite step meets.

    :param run_dir: where ``checkpoint.pt`` is written.
    :param objects: ``(model, guide, optimizer, scheduler)``.
    :param config: the run's config as a plain dict, kept in each checkpoint.
    :param on_nan: ``"stop"``, or ``"rollback"``: restore the last good state, multiply the
        learning rate by ``lr_factor`` and go on, at most ``max_rollbacks`` times in the run.
    :param every: epochs between checkpoints (None: at the last epoch only).
    :param write: False keeps the state in memory only (the ranks of a run on several
        processes but rank 0, which writes it).
    """

    def __init__(
        self, run_dir, objects: tuple, config: dict, on_nan: str = "stop", lr_factor: float = 0.5, max_rollbacks: int = 3, every: int | None = None,
        write: bool = True,
    ):
        self.run_dir, self.objects, self.config, self.every, self.write = run_dir, objects, config, every, write
        self.on_nan, self.lr_factor, self.max_rollbacks = on_nan, lr_factor, max_rollbacks
        self.path = Path(run_dir) / CHECKPOINT
        self.last = None
        self.unsaved: OSError | None = None  # why the last state is not on disk, if it is not
        self.saved_epoch: int | None = None  # the epoch of the checkpoint on disk

    def save(self, progress: dict) -> None:
        """Keep the run's state in memory and write it. A write that fails (a full disk, a
        store gone away) leaves the previous file whole (:func:`atomic_write`) and training
        going on from the state in memory, with a warning; :meth:`require_saved` raises it at
        the end."""
        self.last = capture(*self.objects, progress, self.config)
        if not self.write:
            return
        try:
            save_checkpoint(self.run_dir, self.last)
        except OSError as e:
            self.unsaved = e
            kept = f"{self.path} still holds epoch {self.saved_epoch}" if self.saved_epoch is not None else f"no checkpoint was written to {self.path}"
            log.warning(f"could not write the checkpoint of epoch {progress['epoch']} ({e}); {kept}, and training goes on")
            return
        self.unsaved, self.saved_epoch = None, progress["epoch"]

    def require_saved(self) -> None:
        """Raise if the last state saved did not reach the disk: a run whose final checkpoint
        is missing must not look finished (re-evaluation and resume read that file)."""
        if self.unsaved is not None:
            kept = f"it still holds epoch {self.saved_epoch}" if self.saved_epoch is not None else "none was written"
            raise OSError(
                f"could not write the final checkpoint {self.path} ({self.unsaved}); {kept}. "
                "Make room or fix the folder's permissions, then continue the run with train.resume=true"
            ) from self.unsaved

    def checkpoint(self, progress: dict, final: bool) -> None:
        if final or (self.every and progress["epoch"] % self.every == 0):
            self.save(progress)

    def non_finite(self, error: FloatingPointError) -> dict:
        """Roll back to the last good state with a lower learning rate; or raise, naming it."""
        epoch = self.last["progress"]["epoch"]
        rollbacks = self.last["progress"]["rollbacks"]
        if self.on_nan != "rollback" or len(rollbacks) >= self.max_rollbacks:
            tried = f" after {len(rollbacks)} rollbacks (train.max_rollbacks={self.max_rollbacks})" if self.on_nan == "rollback" else ""
            kept = f"the last good checkpoint is {self.path} (epoch {self.saved_epoch})" if self.saved_epoch is not None else f"no checkpoint could be written to {self.path}"
            raise type(error)(
                f"{error}. Training stopped{tried}; {kept}. "
                "Lower the learning rate (optim.lr=...), or set train.on_nan=rollback to go on from the last good "
                "state with a lower one"
            ) from None
        model, guide, optimizer, scheduler = self.objects
        progress = restore(self.last, model, guide, optimizer, scheduler)
        for group in optimizer.param_groups:
            group["lr"] *= self.lr_factor
        if scheduler is not None:  # it recomputes the rate from its base rates every epoch
            scheduler.base_lrs = [lr * self.lr_factor for lr in scheduler.base_lrs]
        progress["rollbacks"].append({"epoch": error.epoch, "step": error.step, "to_epoch": epoch, "lr": float(optimizer.param_groups[0]["lr"])})
        self.save(progress)  # the lower rate and the rollback are the new last good state
        return progress
