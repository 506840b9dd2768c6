"""Entry point: ``python -m inference.evaluate run=RUN_DIR [evaluation.KEY=VALUE ...]``
re-evaluates a finished run with its own config and checkpoint, the RNG state its training
ended with, and the given changes to ``evaluation.*`` (or ``train.device``), then merges the
results into its ``metrics.json`` (:func:`inference.runs.evaluation_run.reevaluate`).
"""

import logging
import sys
from pathlib import Path

from .runs import reevaluate, summary
from .training import flush_subnormals

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    flush_subnormals()  # before torch starts its worker threads, which keep the mode they start with
    args = sys.argv[1:] if argv is None else argv
    runs = [a.split("=", 1)[1] for a in args if a.startswith("run=")]
    if len(runs) != 1:
        sys.exit("usage: python -m inference.evaluate run=RUN_DIR [evaluation.KEY=VALUE ...]")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    metrics = reevaluate(runs[0], [a for a in args if not a.startswith("run=")])
    log.info(summary(metrics, Path(runs[0])))


if __name__ == "__main__":
    main()
