"""Entry point: ``python -m inference.train [overrides]`` (or ``--multirun``) trains a model and
guide with SVI, evaluates them, and writes the run directory (metrics.json, checkpoint.pt,
.hydra/, plots/). The work is :func:`inference.runs.train`, which tests call with a composed
config; this module is its Hydra wrapper.
"""

import logging
import shutil
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .runs import FAILURE_MARK, train
from .runs.training_run import resume_mode
from .training import flush_subnormals

__all__ = ["main", "train"]

log = logging.getLogger(__name__)


def _run_config_dir(resume: bool | str, output_dir: str) -> str | None:
    """conf/hydra/default.yaml: where Hydra writes a job's config, so that a resume cannot
    overwrite the original's: ``.hydra_resume/`` for a resume, nothing for a finished run that
    ``train.resume=auto`` skips, else ``.hydra/``."""
    mode = resume_mode(resume, Path(output_dir))
    return None if mode == "finished" else ".hydra_resume" if mode else ".hydra"


OmegaConf.register_new_resolver("run_config_dir", _run_config_dir, replace=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    flush_subnormals()  # before torch starts its worker threads, which keep the mode they start with
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        train(cfg, run_dir)
    except Exception as e:
        # into the job's log file, where inference.compare finds why a job of a sweep failed
        log.error(f"{FAILURE_MARK} {type(e).__name__}: {e}".splitlines()[0], exc_info=True)
        if HydraConfig.get().mode == RunMode.RUN and not cfg.train.resume:
            _remove_if_only_hydra_files(run_dir)
        raise


def _remove_if_only_hydra_files(run_dir: Path) -> None:
    """A single run rejected before it wrote anything (a bad value, a missing file) leaves no
    directory behind: Hydra made it, with the config and the log, before the checks could run.
    The error is on the terminal. A sweep's jobs keep theirs, for compare to report."""
    ours = [p for p in run_dir.iterdir() if p.name not in (".hydra", f"{HydraConfig.get().job.name}.log")]
    if not ours:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
