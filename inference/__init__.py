"""What runs programs: datasets, SVI training, estimators, evaluation and the entry points."""

from .data import Dataset
from .estimators import ImportanceEstimate, importance_sampling, log_importance_weights
from .evaluation import evaluate
from .training import ElboStep, fit, parameters_of

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
