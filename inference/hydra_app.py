"""What the Hydra entry points (``inference.train``, ``inference.evaluate``) share: where their
configs are, the clean-up of a directory that Hydra made for a job refused at its start, and
how a refusal reaches the terminal: its message once, its traceback in the job's log."""

import logging
import os
import shutil
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from .training.distributed import launched_world

__all__ = ["CONFIG_PATH", "REFUSALS", "config_group", "exit_if_refused", "log_to_files", "remove_if_only_hydra_files"]

# What the suite raises when it refuses (a config value, data outside a likelihood's support, a
# missing file, a NaN it stopped at): each message names the problem and the fix, which a
# traceback would bury. Other errors are bugs and keep theirs.
REFUSALS = (ValueError, OSError, FloatingPointError)

# A checkout (or an editable install) has conf/ beside the packages; an installed distribution
# carries it as the package data inference.conf. The checkout's path is absolute: a relative one
# Hydra resolves against the calling module, which a console script (vae-train) turns into a
# module named `conf` that an editable install does not have.
_CHECKOUT_CONF = Path(__file__).resolve().parents[1] / "conf"
CONFIG_PATH = str(_CHECKOUT_CONF) if (_CHECKOUT_CONF / "train.yaml").is_file() else "pkg://inference.conf"


# conf/hydra/default.yaml, conf/evaluate.yaml: in a run on several processes, the log file of a
# rank other than 0 is the job's name with .rankN (train.rank1.log beside rank 0's train.log)
OmegaConf.register_new_resolver("rank_suffix", lambda: f".rank{launched_world()[0]}" if launched_world()[0] else "", replace=True)


def config_group(group: str):
    """The folder conf/GROUP/ (a path, or the installed package's resource), where the code reads
    an option's YAML file as written."""
    import importlib.resources

    folder = importlib.resources.files("inference.conf") if CONFIG_PATH.startswith("pkg://") else Path(CONFIG_PATH)
    return folder.joinpath(*group.split("/"))


def remove_if_only_hydra_files(run_dir: Path) -> None:
    """A job rejected before it wrote anything (a bad value, a missing file) leaves no directory
    behind: Hydra made it, with the config and the log, before the checks could run. The error
    is on the terminal."""
    ours = [p for p in run_dir.iterdir() if p.name not in (".hydra", f"{HydraConfig.get().job.name}.log")]
    if not ours:
        shutil.rmtree(run_dir, ignore_errors=True)


def log_to_files(logger: logging.Logger, message: str) -> None:
    """``message`` and the exception being handled, with its traceback, into the log files of the
    root logger's handlers (the job's log), not onto the terminal."""
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, None, sys.exc_info())
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def exit_if_refused(error: BaseException, also: tuple[type, ...] = ()) -> None:
    """In a single run (not a sweep), a refusal's message once on the terminal and exit status 1,
    instead of Hydra's report with a traceback; ``HYDRA_FULL_ERROR=1`` keeps Hydra's. Returns
    where the error is no refusal (:data:`REFUSALS`, or ``also``), for the caller to raise it."""
    if HydraConfig.get().mode != RunMode.RUN or os.environ.get("HYDRA_FULL_ERROR") == "1" or not isinstance(error, (*REFUSALS, *also)):
        return
    print(f"Error: {error}\n(the traceback: the job's log, where it is kept, or the same command with HYDRA_FULL_ERROR=1)", file=sys.stderr)
    raise SystemExit(1)
