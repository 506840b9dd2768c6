"""The types of the entry config's ``train.*`` and ``evaluation.*`` keys, as structured configs
registered in Hydra's ConfigStore (``train_schema``, ``evaluation_schema``; conf/train.yaml lists
them first), so that composition itself refuses ``train.epochs=ten`` or ``train.on_nan=retry`` and
names the key. Ranges and conditions between keys, which OmegaConf cannot express, are checked
in :mod:`inference.runs.checks`. The defaults of ``train.*`` and ``evaluation.*`` are here, each
field with its one line of help (``metadata["help"]``, which the docs' reference reads), and
nowhere else: conf/train.yaml lists the schemas first and sets no key of theirs.

Enumerations are ``str`` enums that print as their value: a value compares equal to its name
(``cfg.train.on_nan == "stop"``), and ``OmegaConf.to_container(cfg, enum_to_str=True)``, what
checkpoints store, keeps plain strings. Lists of choices (``evaluation.splits``) stay lists of
strings, checked in code: an enum member as a dictionary key or file name is a trap not worth it.
"""

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

__all__ = ["EvaluationSchema", "TrainSchema", "register", "typed"]


class Choice(str, Enum):
    """A choice among names, printed as its name (``stop``, not ``OnNan.stop``)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class OnNan(Choice):
    stop = "stop"
    rollback = "rollback"


class FiniteCheck(Choice):
    auto = "auto"
    every_step = "every_step"
    deferred = "deferred"


class ForecastFilter(Choice):
    particles = "particles"
    guide = "guide"


class AisStart(Choice):
    prior = "prior"
    guide = "guide"


def _help(text: str, default=None, factory=None):
    """A field with its one line of help (``metadata["help"]``), which the docs' reference reads."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class TrainSchema:
    """``train.*``: how long and how a run trains."""

    epochs: int = _help("passes over the training set", 300)
    batch_size: int = _help("points per step", 100)
    max_seconds: float | None = _help("a time budget for the SVI loop: no new epoch starts once it is spent; null: none", None)
    seed: int = _help("seeds the run's random numbers; each evaluation draws from a stream of (seed, its name, the split)", 0)
    device: str = _help("auto: CUDA when present, else the CPU; or cpu, cuda, cuda:N (parallel sweep jobs: one GPU each)", "auto")
    threads: Any = _help("torch threads: auto (torch's default, or the cores shared out among parallel sweep jobs) or a number", "auto")
    log_every: int = _help("steps between reads of the loss (and of a deferred finite check: the only host syncs in an epoch)", 50)
    progress: bool = _help("progress bar and one line per epoch", True)
    validate: bool = _help("Pyro's and torch's distribution checks on every step (slower; for debugging)", False)
    checkpoint_every: int = _help("epochs between checkpoints (also one before the first epoch and one after the last)", 10)
    resume: Any = _help("true: continue the run in hydra.run.dir from its checkpoint; auto: skip a finished run, continue one with a checkpoint, start one with neither", False)
    on_nan: OnNan = _help("a NaN/Inf loss or gradient: stop (naming the last good checkpoint) | rollback", OnNan.stop)
    finite_check: FiniteCheck = _help("auto: deferred on CUDA with a fused optimizer, else every_step; deferred: read every log_every steps (optim.fused=true)", FiniteCheck.auto)
    cuda_graphs: Any = _help("capture each step as a CUDA graph: auto where it can (CUDA, trace_elbo or graph_trace_elbo, fused Adam, no validation); true: refuse else", "auto")
    rollback_lr_factor: float = _help("on_nan=rollback: restore the last good state and multiply the lr by this", 0.5)
    max_rollbacks: int = _help("on_nan=rollback: the most rollbacks in one run, then stop", 3)
    distributed: Any = _help("one run on several processes (torchrun, SLURM tasks): auto where launched so; true insists; false refuses", "auto")
    distributed_timeout: float = _help("seconds a rank waits on the others in a step before the run ends on every rank (a rank that died)", 300.0)


@dataclass
class EvaluationSchema:
    """``evaluation.*``: the settings every method shares, the methods (``methods``), and the
    settings of the shipped methods by their names of old, which their entries read and which
    switch the methods that are off by default on (``gaps``, ``ais``, ``posterior_points``,
    ``intervene``) or the ones that are on off (``denoise``, ``forecast_horizon=0``)."""

    num_particles: int = _help("K importance samples per data point, for the guide and the prior proposal", 1000)
    prior_proposal: bool = _help("also estimate log p(x) with the prior as proposal (what the guide buys); false halves the time", True)
    max_points: int | None = _help("evaluate the first N points of each split; null: all", None)
    memory_budget_mb: float = _help("the estimators' passes are sized so that their peak tensor memory stays under this", 512.0)
    chunk_size: int | None = _help("or: this many particle x data-point pairs per pass, whatever memory they take", None)
    cuda_graphs: bool = _help("on CUDA, log_px replays the seeded estimator's groups of points as CUDA graphs: the same numbers, fewer host round trips; false: eager", True)
    splits: list[str] = _help("the splits log_px, bits_per_dim and accuracy run on; other methods take their own splits (default [test])", factory=lambda: ["valid", "test"])
    figures: bool = _help("PNGs in the run's plots/: curve, samples, reconstructions, traversals, and each method's own", True)
    methods: dict[str, Any] = _help("the evaluations: name -> {_target_, options, splits, when_applicable} (conf/evaluation/methods/)", factory=dict)
    probe_site: str = _help("the latent site whose posterior mean the linear probe reads; for sequences z_1 ... z_T", "z")
    gaps: bool | None = _help("true: the inference-gap decomposition on the first gap_points test points (method gaps); false: off", None)
    gap_points: int = _help("test points of the gap decomposition", 100)
    gap_particles: int = _help("K of the log p(x) estimate inside the gap decomposition", 5000)
    ais: bool | None = _help("true: AIS on the first ais_points test points, and BDMC on as many simulated ones (method ais); false: off", None)
    ais_points: int = _help("test points of AIS, and simulated points of BDMC", 100)
    ais_steps: int = _help("T, intermediate distributions of AIS's geometric path", 500)
    ais_leapfrog: int = _help("leapfrog steps per HMC transition of AIS", 10)
    ais_step_size: float = _help("the pilot's initial leapfrog step size; adapted per point and step towards 65% acceptance", 0.05)
    ais_chains: int = _help("independent AIS chains per data point", 16)
    ais_start: AisStart = _help("prior | guide: where AIS's path starts", AisStart.prior)
    denoise: bool | None = _help("null: the denoising evaluation where the run has a corruption; true: required; false: off", None)
    denoise_levels: list[float] = _help("corruption levels of the denoising evaluation (above 0)", factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5])
    forecast_context: int = _help("sequences: frames seen before the forecast (test.forecast)", 10)
    forecast_horizon: int = _help("sequences: frames forecast after them; 0: no forecast", 10)
    forecast_filter: ForecastFilter = _help("particles: the model's particle filter of the state after the context | guide: q(z_k | x_1:k)", ForecastFilter.particles)
    smc_particles: int = _help("sequences: particles per sequence of log_px_smc, log p(x_1:T) by sequential Monte Carlo", 1000)
    smc_latent_draws: int | None = _help(
        "sequences with latents of their own (transition=physics: the drive phase): draw them this many times a sequence, each draw "
        "shared by smc_particles / this many particles (null: each particle its own, which resampling thins out)", None)
    smc_proposal: str = _help(
        "sequences: guide (q(z_t | z_t-1, x), the tighter) | transition (the model's own: the bootstrap filter) | defensive (half each, "
        "the model's angles read from the frames: robust where the guide fails)", "guide")
    filter_particles: int = _help("the particle filter's particles per sequence (forecast and intervention)", 4000)
    intervene: bool | None = _help("true: transition=physics rolled out with the drive switched off, against the simulator (test.intervention); false: off", None)
    intervention_context: int | None = _help("frames seen before the drive is switched off; null: forecast_context", None)
    supervised_only_steps: int = _help("semi-supervised runs: the guide's classifier trained on the kept labels alone (test.accuracy_supervised_only); 0: off", 2000)
    posterior_points: int = _help("NUTS on this many test points (method posterior: posterior.nc, summaries, plots); 0: off", 0)
    posterior_samples: int = _help("NUTS draws per chain", 500)
    posterior_chains: int = _help("independent NUTS chains, one after another, each with its own adaptation", 4)
    posterior_warmup: int = _help("NUTS warm-up steps", 500)


def register() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent); importing :mod:`inference` does it."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainSchema, package="train")
    store.store(name="evaluation_schema", node=EvaluationSchema, package="evaluation")


def typed(cfg: DictConfig) -> DictConfig:
    """A config read back from a run's ``.hydra/config.yaml`` (plain YAML) with the schemas' types
    again, in struct mode: what composition gave the run, so that overrides merged into it are
    checked alike. Keys that an older run lacks get the schemas' defaults."""
    schemas = OmegaConf.create({"train": OmegaConf.structured(TrainSchema), "evaluation": OmegaConf.structured(EvaluationSchema)})
    cfg = OmegaConf.merge(schemas, cfg)
    _as_trained(cfg)
    OmegaConf.set_struct(cfg, True)  # a misspelled key is an error, not a new key
    return cfg


# Component keys whose default changed: a run that predates a key was trained with the value
# it had then, which its config does not say. The continuous Bernoulli became exact and its
# logits bounded by default; an older run's density was torch's form, unbounded.
_DEFAULTS_BEFORE = {"models.ContinuousBernoulli": {"exact": False, "logit_bound": None}}


def _as_trained(cfg: DictConfig) -> None:
    """Give an older run's components the values they were trained with, for keys its config lacks."""
    likelihood = cfg.get("likelihood")
    before = _DEFAULTS_BEFORE.get(likelihood.get("_target_")) if isinstance(likelihood, DictConfig) else None
    for key, value in (before or {}).items():
        if key not in likelihood:
            likelihood[key] = value
