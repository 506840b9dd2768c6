"""Files of the run-directory contract beside the checkpoint: ``metrics.json``,
``per_point.npz`` and the lock.

Both files are written atomically, as ``checkpoint.pt`` is
(:func:`inference.training.checkpoint.atomic_write`), so a run killed mid-write leaves the
previous file whole rather than a truncated one.
"""

import fcntl
import hashlib
import io
import json
import math
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..training.checkpoint import atomic_write

__all__ = [
    "FAILURE_MARK", "METRICS", "PER_POINT", "RefusedRunDirectory", "RunDirectoryInUse", "RunDirectoryTaken", "fingerprints", "held", "locked",
    "read_metrics", "read_per_point", "write_metrics", "write_per_point",
]

METRICS = "metrics.json"
PER_POINT = "per_point.npz"
LOCK = ".lock"
FAILURE_MARK = "run failed:"  # the entry point logs it, with the error, to the job log when a run raises


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
    atomic_write(path, lambda f: f.write(json.dumps(metrics, indent=2).encode() + b"\n"))
    return path


def read_metrics(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / METRICS).read_text())


def fingerprints(x: torch.Tensor) -> np.ndarray:
    """A 64-bit hash of each point's values (int64): two runs pair a point when it is the same
    point, whatever its index or the other points evaluated."""
    rows = x.detach().to("cpu", torch.float32).contiguous().numpy()
    return np.array([int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little", signed=True) for row in rows], dtype=np.int64)


def write_per_point(run_dir: str | Path, splits: dict[str, dict[str, np.ndarray]]) -> Path:
    """Write ``per_point.npz``: for each split, arrays named ``SPLIT.KEY`` with one entry per
    evaluated point. The splits given replace theirs; those of an earlier write that are not
    given are kept (a re-evaluation of the test split leaves the valid split's results)."""
    path = Path(run_dir) / PER_POINT
    arrays = {k: v for k, v in read_per_point(run_dir).items() if k.split(".", 1)[0] not in splits} if path.is_file() else {}
    arrays.update({f"{split}.{key}": np.asarray(value) for split, values in splits.items() for key, value in values.items()})

    def write(f):
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        f.write(buffer.getvalue())

    atomic_write(path, write)
    return path


def read_per_point(run_dir: str | Path) -> dict[str, np.ndarray]:
    with np.load(Path(run_dir) / PER_POINT) as data:
        return {key: data[key] for key in data.files}


class RefusedRunDirectory(Exception):
    """A run directory that holds another run: the process refused must leave its files, its
    log included, as they are."""


class RunDirectoryInUse(RefusedRunDirectory, RuntimeError):
    """Another process holds the run directory."""


class RunDirectoryTaken(RefusedRunDirectory, ValueError):
    """The run directory holds a run that this one would not continue."""


def held(run_dir: str | Path) -> bool:
    """Whether a process holds ``run_dir`` (:func:`locked`) now; the check keeps no lock."""
    path = Path(run_dir) / LOCK
    if not path.is_file():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


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
            raise RunDirectoryInUse(
                f"{run_dir} is in use by {holder}; two processes cannot write one run directory. "
                "Wait for it to finish, or train into another directory"
            ) from None
        f.seek(0), f.truncate(), f.write(f"process {os.getpid()}\n"), f.flush()
        try:
            yield
        finally:
            path.unlink()  # before unlocking: whoever opens it next finds it gone and fails cleanly
