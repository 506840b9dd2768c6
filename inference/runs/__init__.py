"""Runs: what turns a composed config into a run directory, and run directories into tables.

Building the data, model and guide from a config (:mod:`.build`) after checking its values
(:mod:`.checks`); a training run (:mod:`.training_run`) and the evaluation of a trained or
finished run (:mod:`.evaluation_run`, :mod:`.reevaluation`) by the methods its config names (:mod:`.methods`); the
run directory's files and lock (:mod:`.rundir`); the end-of-run summary (:mod:`.summary`); and the comparison
of a sweep's runs (:mod:`.comparison`). The entry points ``inference.train``,
``inference.evaluate`` and ``inference.compare`` are thin wrappers around these.
"""

from .build import bind, build, check_support, instantiate
from .checks import check_config
from .comparison import compare
from .evaluation_run import evaluate_run
from .reevaluation import reevaluate
from .rundir import FAILURE_MARK, locked, read_metrics, write_metrics
from .summary import summary
from .training_run import train

__all__ = [
    "FAILURE_MARK",
    "bind",
    "build",
    "check_config",
    "check_support",
    "compare",
    "evaluate_run",
    "instantiate",
    "locked",
    "read_metrics",
    "reevaluate",
    "summary",
    "train",
    "write_metrics",
]
