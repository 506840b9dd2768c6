"""Files of the run-directory contract: ``metrics.json`` and ``checkpoint.pt``.

Both are written atomically (a temporary file in the same folder, then a rename), so a run
killed mid-write leaves the previous file whole rather than a truncated one.
"""

import json
import math
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

__all__ = ["write_metrics", "read_metrics", "save_checkpoint", "load_checkpoint"]

METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"
FAILURE_MARK = "run failed:"  # the entry point logs it, with the error, to the job log when a run raises


def _atomic_write(path: Path, write) -> None:
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


def _non_finite_paths(value, path="") -> list[str]:
    if isinstance(value, float) and not math.isfinite(value):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _non_finite_paths(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _non_finite_paths(v, f"{path}[{i}]")]
    return []


def write_metrics(run_dir: str | Path, metrics: dict) -> Path:
    """Write ``metrics.json``; refuses NaN and infinities, which are not JSON numbers."""
    bad = _non_finite_paths(metrics)
    if bad:
        raise ValueError(f"metrics hold non-finite values at {', '.join(bad)}; metrics.json takes finite numbers only")
    path = Path(run_dir) / METRICS
    _atomic_write(path, lambda f: f.write(json.dumps(metrics, indent=2).encode() + b"\n"))
    return path


def read_metrics(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / METRICS).read_text())


def save_checkpoint(run_dir: str | Path, model: nn.Module, guide: nn.Module, optimizer: torch.optim.Optimizer) -> Path:
    """Write ``checkpoint.pt``: the state dicts of model, guide and optimizer."""
    state = {"model": model.state_dict(), "guide": guide.state_dict(), "optimizer": optimizer.state_dict()}
    path = Path(run_dir) / CHECKPOINT
    _atomic_write(path, lambda f: torch.save(state, f))
    return path


def load_checkpoint(run_dir: str | Path, model: nn.Module, guide: nn.Module, optimizer=None, map_location=None) -> dict:
    """Load ``checkpoint.pt`` into the given modules with ``weights_only=True``: a checkpoint
    that carries pickled code is refused rather than run."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = torch.load(path, map_location=map_location, weights_only=True)
    model.load_state_dict(state["model"])
    guide.load_state_dict(state["guide"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    return state
