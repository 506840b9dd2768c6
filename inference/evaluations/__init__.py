"""Evaluations: one class a module, each turning a trained model and guide into numbers of
``metrics.json`` (:mod:`.base` holds their contract, the context they are called with and the
random stream each draws from). log p̂(x) and the ELBO (:mod:`.log_px`), log p̂(x₁:T) of
sequences by sequential Monte Carlo (:mod:`.smc`), bits per dimension (:mod:`.bits_per_dim`),
accuracy (:mod:`.accuracy`), the linear probe (:mod:`.probe`), the inference gaps
(:mod:`.gaps`), AIS and BDMC (:mod:`.annealed`), NUTS (:mod:`.nuts`), denoising
(:mod:`.denoise`), forecasts (:mod:`.forecast`), the intervention (:mod:`.intervention`) and
the learned physics (:mod:`.physics`); the run's own figures (:mod:`.overview`) on the plotting
functions every figure shares (:mod:`.figures`).
"""

from .accuracy import Accuracy
from .annealed import Annealed
from .base import Context, Evaluation, Programs, positive_ints, random_stream, stream_seed
from .bits_per_dim import BitsPerDim
from .denoise import Denoise
from .forecast import Forecast
from .gaps import Gaps
from .intervention import Intervention
from .log_px import LogPx
from .nuts import Posterior
from .physics import LearnedPhysics
from .probe import Probe
from .smc import LogPxSmc

SHIPPED = (LogPx, LogPxSmc, BitsPerDim, Accuracy, Probe, Gaps, Annealed, Posterior, Denoise, Forecast, Intervention, LearnedPhysics)
# what the suite writes in a split's entry of metrics.json: no method of a user's may take these names
SUITE_KEYS = frozenset(key for kind in SHIPPED for key in kind.keys) | {"local_fit_steps"}

__all__ = [
    "Accuracy",
    "Annealed",
    "BitsPerDim",
    "Context",
    "Denoise",
    "Evaluation",
    "Forecast",
    "Gaps",
    "Intervention",
    "LearnedPhysics",
    "LogPx",
    "LogPxSmc",
    "Posterior",
    "Probe",
    "Programs",
    "SHIPPED",
    "SUITE_KEYS",
    "positive_ints",
    "random_stream",
    "stream_seed",
]
