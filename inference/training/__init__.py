"""Training: the SVI loop over in-memory data (:mod:`.loop`), the objectives it can minimize
(:mod:`.objectives`: a weighted KL term and its warm-up, the lean and the recorded Trace_ELBO),
what it optimizes, wherever a program keeps it (:mod:`.parameters`),
learning-rate schedules (:mod:`.schedules`), what fit does beyond the loop, as callbacks
(:mod:`.callbacks`: the validation ELBO, a time limit), and checkpoints, from which a run resumes
or rolls back exactly (:mod:`.checkpoint`, a callback too)."""

from .callbacks import Callback, TimeLimit, ValidationElbo
from .checkpoint import Checkpoints, load_checkpoint, save_checkpoint
from .loop import ElboStep, NonFiniteError, fit, flush_subnormals, new_progress
from .objectives import GraphTrace_ELBO, KLWeighted, LeanTrace_ELBO
from .parameters import adopt_store_parameters, parameters_of

__all__ = [
    "Callback",
    "Checkpoints",
    "ElboStep",
    "GraphTrace_ELBO",
    "KLWeighted",
    "LeanTrace_ELBO",
    "NonFiniteError",
    "adopt_store_parameters",
    "fit",
    "flush_subnormals",
    "load_checkpoint",
    "new_progress",
    "parameters_of",
    "save_checkpoint",
    "TimeLimit",
    "ValidationElbo",
]
