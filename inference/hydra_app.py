"""What the Hydra entry points (``inference.train``, ``inference.evaluate``) share: where their
configs are, and the clean-up of a directory that Hydra made for a job refused at its start."""

import shutil
from pathlib import Path

from hydra.core.hydra_config import HydraConfig

__all__ = ["CONFIG_PATH", "remove_if_only_hydra_files"]

# A checkout (or an editable install) has conf/ beside the packages; an installed distribution
# carries it as the package data inference.conf. The checkout's path is absolute: a relative one
# Hydra resolves against the calling module, which a console script (vae-train) turns into a
# module named `conf` that an editable install does not have.
_CHECKOUT_CONF = Path(__file__).resolve().parents[1] / "conf"
CONFIG_PATH = str(_CHECKOUT_CONF) if (_CHECKOUT_CONF / "train.yaml").is_file() else "pkg://inference.conf"


def remove_if_only_hydra_files(run_dir: Path) -> None:
    """A job rejected before it wrote anything (a bad value, a missing file) leaves no directory
    behind: Hydra made it, with the config and the log, before the checks could run. The error
    is on the terminal."""
    ours = [p for p in run_dir.iterdir() if p.name not in (".hydra", f"{HydraConfig.get().job.name}.log")]
    if not ours:
        shutil.rmtree(run_dir, ignore_errors=True)
