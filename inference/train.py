"""Entry point: ``python -m inference.train [overrides]`` (or ``--multirun``) trains a model and
guide with SVI, evaluates them, and writes the run directory (metrics.json, checkpoint.pt,
.hydra/, plots/). The work is :func:`inference.runs.train`, which tests call with a composed
config; this module is its Hydra wrapper.
"""

import difflib
import logging
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .hydra_app import CONFIG_PATH, exit_if_refused, log_to_files, remove_if_only_hydra_files
from .runs import FAILURE_MARK, train
from .runs.rundir import RefusedRunDirectory, held
from .runs.training_run import resume_mode
from .training import flush_subnormals
from .training.checkpoint import CHECKPOINT
from .training.distributed import launched_world

__all__ = ["main", "train"]

log = logging.getLogger(__name__)


def _run_config_dir(resume: bool | str, output_dir: str) -> str | None:
    """conf/hydra/default.yaml: where Hydra writes a job's config, so that a resume cannot
    overwrite the original's: ``.hydra_resume/`` for a resume, ``.hydra/`` for a new run, and
    nothing where the job will not run: a finished run that ``train.resume=auto`` skips, a run
    directory another process holds, or one holding a run that a new one may not overwrite."""
    run_dir = Path(output_dir)
    if launched_world()[0] != 0:  # a run on several processes: rank 0 writes the run's config
        return None
    mode = resume_mode(resume, run_dir)
    if mode == "finished" or held(run_dir) or (not mode and (run_dir / CHECKPOINT).exists()):
        return None
    return ".hydra_resume" if mode else ".hydra"


OmegaConf.register_new_resolver("run_config_dir", _run_config_dir, replace=True)

# hydra/sweeper=optuna: optuna 2.10, the newest that hydra-optuna-sweeper 1.2 accepts, imports
# SQLAlchemy's declarative_base from where SQLAlchemy 1.x kept it. Harmless (the study is in
# memory unless hydra.sweeper.storage names a database), and fixed in optuna 3.
warnings.filterwarnings("ignore", message=r"The ``declarative_base\(\)`` function is now available", module=r"optuna\.")


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train and evaluate one run; returns its validation log p̂(x) (the mean over the
    validation points), the value an optimizing sweeper (``hydra/sweeper=optuna``) maximizes,
    or None where the run did not evaluate the validation split."""
    flush_subnormals()  # before torch starts its worker threads, which keep the mode they start with
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    direction = _optimized_direction()
    try:
        _check_experiment_package(cfg)
        _check_top_level_keys(cfg)
        if direction is not None and "valid" not in cfg.evaluation.splits:
            raise ValueError(
                f"the sweeper {direction}s the validation log p-hat(x), but evaluation.splits={list(cfg.evaluation.splits)} "
                "leaves out valid; add it (evaluation.splits=[valid,test])"
            )
        metrics = train(cfg, run_dir)
    except RefusedRunDirectory as e:
        _leave_log_alone(run_dir)  # another run's: its log must not read as failed; the message goes to the terminal
        exit_if_refused(e, also=(RefusedRunDirectory,))
        raise
    except Exception as e:
        # into the job's log file, where inference.compare finds why a job of a sweep failed; on
        # the terminal, a sweep's job says it too, a single run's refusal once (exit_if_refused)
        failure = f"{FAILURE_MARK} {type(e).__name__}: {e}".splitlines()[0]
        if HydraConfig.get().mode == RunMode.RUN:
            log_to_files(log, failure)
        else:
            log.error(failure, exc_info=True)
        if HydraConfig.get().mode == RunMode.RUN and not cfg.train.resume:
            remove_if_only_hydra_files(run_dir)  # a sweep's jobs keep theirs, for compare to report
        if direction is None:
            exit_if_refused(e)
            raise
        return _worst(direction)
    value = metrics.get("valid", {}).get("log_px", {}).get("mean")
    if direction is not None and value is None:
        # metrics.json writes a non-finite estimate as null; Optuna fails a trial that returns
        # None, and its sweeper then ends the study
        log.warning(f"the validation log p-hat(x) of {run_dir} is null or absent: the study counts the trial as its worst value")
        return _worst(direction)
    return value


def _leave_log_alone(run_dir: Path) -> None:
    """Close the log files Hydra opened in ``run_dir`` for this job, so that nothing more is written there."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == run_dir.resolve()]:
        root.removeHandler(handler)
        handler.close()


def _check_experiment_package(cfg: DictConfig) -> None:
    """An experiment file without ``# @package _global_`` as its first line puts its keys under
    ``experiment.``, where nothing reads them: the run would train the defaults without a word."""
    misplaced = cfg.get("experiment")
    if isinstance(misplaced, DictConfig):
        name = HydraConfig.get().runtime.choices.get("experiment")
        keys = ", ".join(f"experiment.{key}" for key in misplaced)
        raise ValueError(
            f"experiment/{name}.yaml puts its keys under experiment. ({keys}), where they change nothing: "
            "make `# @package _global_` its first line, as every preset in conf/experiment/ has it"
        )


def _check_top_level_keys(cfg: DictConfig) -> None:
    """A top-level key that is neither the suite's (``z_dim``, ``train``, ``evaluation``) nor a
    config group's nor read by an interpolation (``width`` in ``encoder.hidden: ["${width}"]``):
    a misspelling in an experiment file of one's own (``trian:``), which struct mode lets through
    and nothing reads."""
    known = {"z_dim", "train", "evaluation", *(group.split("/")[0] for group in HydraConfig.get().runtime.choices)}
    written = OmegaConf.to_yaml(cfg)  # interpolations as written
    unknown = [key for key in cfg if key not in known and "${" + str(key) not in written]
    if unknown:
        hints = [f"{key} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(key, known, n=1)) else key for key in unknown]
        raise ValueError(
            f"the config has top-level keys the suite does not read: {', '.join(hints)}; they change nothing. Fix the name in "
            f"the experiment file or override that sets it; the top-level keys are {', '.join(sorted(known))}"
        )


def _worst(direction: str) -> float:
    """The value an optimizing sweeper ranks last. Optuna's sweeper ends the whole study on a
    trial that raises, returns None or returns NaN; the worst value lets the study go on."""
    return float("-inf") if direction == "maximize" else float("inf")


def _optimized_direction() -> str | None:
    """``maximize`` or ``minimize`` under a sweeper that optimizes one value (Optuna's), else None."""
    direction = HydraConfig.get().sweeper.get("direction")
    return str(direction).lower() if isinstance(direction, str) else None


if __name__ == "__main__":
    main()
