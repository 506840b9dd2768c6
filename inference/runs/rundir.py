"""Files of the run-directory contract beside the checkpoint: ``metrics.json`` and the lock.

``metrics.json`` is written atomically, as ``checkpoint.pt`` is
(:func:`inference.training.checkpoint.atomic_write`), so a run killed mid-write leaves the
previous file whole rather than a truncated one.
"""

import fcntl
import json
import math
import os
from contextlib import contextmanager
from pathlib import Path

from ..training.checkpoint import atomic_write

__all__ = ["FAILURE_MARK", "METRICS", "locked", "read_metrics", "write_metrics"]

METRICS = "metrics.json"
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
