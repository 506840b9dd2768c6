"""ArviZ, imported so that processes starting together cannot kill each other.

ArviZ 0.23 announces its coming refactor on import, once a day: it records the day in a stamp
file under the user's cache, written through a temporary file of a fixed name. Processes that
import it in the same instant on the first import of a day (the jobs of a joblib sweep, the
workers of a cluster launcher) write and rename that one temporary file, and every one but the
first dies at import with ``FileNotFoundError: …/daily_warning.tmp`` (arviz-devs/arviz#2530, not
fixed in any release up to 0.23.4). Writing the day's stamp first, through a temporary file of
our own, makes ArviZ skip its write; the announcement is hidden, since the suite pins the ArviZ
versions it works with.
"""

import datetime
import functools
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

__all__ = ["announcement_hidden", "arviz"]


def stamp_arviz_announcement_as_shown() -> None:
    """Write today's date to ArviZ's daily stamp, atomically and under a unique temporary name,
    unless it is there already. Any failure (no platformdirs, a read-only cache) leaves ArviZ to
    behave as it would without this."""
    try:
        from platformdirs import user_cache_dir

        directory = Path(user_cache_dir("arviz", "arviz"))
        stamp = directory / "daily_warning"
        today = datetime.date.today().isoformat()
        if stamp.is_file() and stamp.read_text().strip() == today:
            return
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix="daily_warning.", suffix=".suite")
        with os.fdopen(handle, "w") as file:
            file.write(today)
        os.replace(temporary, stamp)
    except (ImportError, OSError):
        pass


# The announcement's own words: any other warning of the import (a deprecation in a dependency,
# a version ArviZ does not support) still reaches the user, and fails the tests.
ANNOUNCEMENT = r"\s*ArviZ is undergoing a major refactor"


@contextmanager
def announcement_hidden():
    """Hide ArviZ's refactor announcement within the block, and no other warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=ANNOUNCEMENT, category=FutureWarning)
        yield


@functools.cache
def arviz():
    """ArviZ, imported on first use: with SciPy, xarray and pandas its import is half of what a
    run's start takes, which a process that does not evaluate (a sweep's launcher, a rank that
    is killed, ``--cfg``) need not pay."""
    stamp_arviz_announcement_as_shown()
    with announcement_hidden():  # the announcement, on the rare import that still makes it
        import arviz as az
    return az


def __getattr__(name: str):
    if name == "az":  # ``from .arviz_import import az``: the module itself, imported then
        return arviz()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
