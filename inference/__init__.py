"""What runs programs, in subpackages by concern, each depending only on those listed before it:

- :mod:`inference.data`: datasets and their transforms, the simulated pendulum;
- :mod:`inference.estimators`: importance sampling and the program helpers it shares with AIS,
  NUTS and the gap decomposition; diagnostics; memory sizing;
- :mod:`inference.training`: the SVI loop, objectives, schedules, checkpoints;
- :mod:`inference.runs`: building objects from a config, the run directory, evaluation of a
  run, figures, compare;
- the entry points ``python -m inference.train``, ``inference.evaluate``, ``inference.compare``.
"""

from .data import Dataset
from .estimators import ImportanceEstimate, evaluate, importance_sampling, log_importance_weights
from .schema import register as _register_schemas
from .training import ElboStep, fit, parameters_of

_register_schemas()  # conf/train.yaml's train_schema and evaluation_schema, before any composition

__all__ = [
    "Dataset",
    "ElboStep",
    "ImportanceEstimate",
    "evaluate",
    "fit",
    "importance_sampling",
    "log_importance_weights",
    "parameters_of",
]
