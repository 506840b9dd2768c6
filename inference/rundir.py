"""Files of the run-directory contract: ``metrics.json``, ``checkpoint.pt`` and the lock.

Both are written atomically (a temporary file in the same folder, then a rename), so a run
killed mid-write leaves the previous file whole rather than a truncated one.
"""

import fcntl
import json
import math
import os
import pickle
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = ["write_metrics", "read_metrics", "save_checkpoint", "load_checkpoint", "locked"]

METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"
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


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _value_at(tree, path: str):
    for part in path.replace("[", ".[").split("."):
        tree = tree[int(part[1:-1])] if part.startswith("[") else tree[part]
    return tree


def write_metrics(run_dir: str | Path, metrics: dict) -> Path:
    """Write ``metrics.json``. NaN and infinities are not JSON numbers: each is written as
    ``null`` and listed, with what it was, under ``"non_finite"``, so a long run's results
    are written whatever one of its numbers turned out to be."""
    bad = _non_finite_paths(metrics)
    if bad:
        values = {path: _value_at(metrics, path) for path in bad}
        metrics = {**_finite(metrics), "non_finite": {path: f"{value} (written as null)" for path, value in values.items()}}
    path = Path(run_dir) / METRICS
    _atomic_write(path, lambda f: f.write(json.dumps(metrics, indent=2).encode() + b"\n"))
    return path


def read_metrics(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / METRICS).read_text())


def save_checkpoint(run_dir: str | Path, state: dict) -> Path:
    """Write ``checkpoint.pt`` atomically: the previous one stays whole until the new one is."""
    path = Path(run_dir) / CHECKPOINT
    _atomic_write(path, lambda f: torch.save(state, f))
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


@contextmanager
def locked(run_dir: str | Path):
    """Hold ``run_dir/.lock`` for the duration: a second process that wants the same run
    directory (two resumes of one run) fails at once with a clear error. The lock is the
    kernel's (``flock``), so it dies with its process, even under SIGKILL: no stale locks."""
    path = Path(run_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not path.exists() or os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
                raise BlockingIOError  # its holder finished and removed it as we opened it
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RuntimeError(
                f"{run_dir} is in use by {holder}; two processes cannot write one run directory. "
                "Wait for it to finish, or train into another directory"
            ) from None
        f.seek(0), f.truncate(), f.write(f"process {os.getpid()}\n"), f.flush()
        try:
            yield
        finally:
            path.unlink()  # before unlocking: whoever opens it next finds it gone and fails cleanly
