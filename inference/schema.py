"""The types of the entry config's ``train.*`` and ``evaluation.*`` keys, as structured configs
registered in Hydra's ConfigStore (``train_schema``, ``evaluation_schema``; conf/train.yaml lists
them first), so that composition itself refuses ``train.epochs=ten`` or ``train.on_nan=retry`` and
names the key. Ranges and conditions between keys, which OmegaConf cannot express, are checked
in :mod:`inference.runs.checks`. The defaults are conf/'s YAML files; the schemas hold types only
(a field's default here is what a missing key would get).

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


@dataclass
class TrainSchema:
    epochs: int = 300
    batch_size: int = 100
    max_seconds: float | None = None
    seed: int = 0
    device: str = "auto"
    threads: Any = "auto"  # auto or a number: OmegaConf has no unions of types
    log_every: int = 50
    progress: bool = True
    validate: bool = False
    checkpoint_every: int = 10
    resume: Any = False  # true, false or auto
    on_nan: OnNan = OnNan.stop
    finite_check: FiniteCheck = FiniteCheck.auto
    cuda_graphs: Any = "auto"  # true, false or auto
    rollback_lr_factor: float = 0.5
    max_rollbacks: int = 3


@dataclass
class EvaluationSchema:
    num_particles: int = 1000
    prior_proposal: bool = True
    max_points: int | None = None
    memory_budget_mb: float = 512.0
    chunk_size: int | None = None
    splits: list[str] = field(default_factory=lambda: ["valid", "test"])
    probe_site: str = "z"
    gaps: bool = False
    gap_points: int = 100
    gap_particles: int = 5000
    ais: bool = False
    ais_points: int = 100
    ais_steps: int = 500
    ais_leapfrog: int = 10
    ais_step_size: float = 0.05
    ais_chains: int = 16
    ais_start: AisStart = AisStart.prior
    denoise: bool | None = None
    denoise_levels: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5])
    forecast_context: int = 10
    forecast_horizon: int = 10
    forecast_filter: ForecastFilter = ForecastFilter.particles
    filter_particles: int = 4000
    intervene: bool = False
    intervention_context: int | None = None
    supervised_only_steps: int = 2000
    figures: bool = True
    posterior_points: int = 0
    posterior_samples: int = 500
    posterior_chains: int = 4
    posterior_warmup: int = 500


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
