"""Entry point: ``python -m inference.evaluate run=RUN_DIR [evaluation.KEY=VALUE ...]``
re-evaluates a finished run with its own config and checkpoint, each evaluation in its own
random stream, and the given changes to ``evaluation.*`` (or ``train.device``, ``train.progress``),
then merges the results into its ``metrics.json`` (:func:`inference.runs.reevaluation.reevaluate`).

A Hydra app with its own primary config (conf/evaluate.yaml): composition checks the overrides'
keys and types, the run's ``.hydra/`` is never written, and the log goes to ``RUN_DIR/evaluate.log``.
``--multirun run=A,B`` re-evaluates several runs with the same overrides.
"""

import logging
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .hydra_app import CONFIG_PATH, exit_if_refused, log_to_files, remove_if_only_hydra_files
from .runs import reevaluate, summary
from .training import flush_subnormals

__all__ = ["main"]

log = logging.getLogger(__name__)

OmegaConf.register_new_resolver("absolute_path", lambda path: str(Path(path).resolve()), replace=True)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    flush_subnormals()  # before torch starts its worker threads, which keep the mode they start with
    # Only what the user gave: the evaluate config's own values are the schemas' defaults, not the run's.
    overrides = [o for o in HydraConfig.get().overrides.task if o.split("=", 1)[0] != "run"]
    run_dir = Path(cfg.run)
    log.info(f"re-evaluating {run_dir} with {overrides or 'its own settings'}")
    start = time.perf_counter()
    try:
        metrics = reevaluate(run_dir, overrides)
    except Exception as e:
        log_to_files(log, f"re-evaluation failed: {type(e).__name__}: {e}".splitlines()[0])
        remove_if_only_hydra_files(run_dir)  # run=... named no run: leave no directory behind
        exit_if_refused(e)
        raise
    log.info(summary(metrics, run_dir, evaluated_in=time.perf_counter() - start))


if __name__ == "__main__":
    main()
