"""Checks of a composed config's values, run before any work so that a bad override fails fast.

Unknown keys, wrong types and unknown choices of ``train.*`` and ``evaluation.*`` are refused by
Hydra itself (the composed config is in struct mode, typed by inference/schema.py); this module
checks the ranges of the values and names the key, what arrived and what is expected.
It takes any mapping with attribute access (an OmegaConf ``DictConfig``) and imports neither
hydra nor omegaconf.
"""

import os

import torch

from guides.denoising import CORRUPTIONS

__all__ = ["check_config", "pinned_device", "resolve_device", "thread_count"]


def _fail(key: str, value, expected: str) -> None:
    raise ValueError(f"config key {key}={value!r} is invalid: expected {expected}; override it, e.g. {key}=...")


def _positive_int(key: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        _fail(key, value, "a positive integer" + (" or null" if allow_none else ""))


def _at_least_zero(key: str, value, meaning: str = "") -> None:
    if value < 0:
        _fail(key, value, "a non-negative integer" + meaning)


def check_config(cfg) -> None:
    """Raise ``ValueError`` naming the first invalid value of the public keys.

    The types and choices of ``train.*`` and ``evaluation.*`` are the schemas' (inference/schema.py),
    enforced by Hydra while composing; what is left here is ranges, conditions between keys, and
    the keys of the other groups, whose options are free-form YAML."""
    _positive_int("z_dim", cfg.z_dim)
    train, evaluation = cfg.train, cfg.evaluation
    for key in ("epochs", "batch_size", "log_every", "checkpoint_every"):
        _positive_int(f"train.{key}", train[key])
    _at_least_zero("train.seed", train.seed)
    if not 0 < train.rollback_lr_factor < 1:
        _fail("train.rollback_lr_factor", train.rollback_lr_factor, "a number between 0 and 1")
    _at_least_zero("train.max_rollbacks", train.max_rollbacks)
    if train.threads != "auto" and (isinstance(train.threads, bool) or not isinstance(train.threads, int) or train.threads <= 0):
        _fail("train.threads", train.threads, "auto or a positive integer")
    if not isinstance(train.resume, bool) and train.resume != "auto":
        _fail("train.resume", train.resume, "true, false or auto")
    if not isinstance(train.cuda_graphs, bool) and train.cuda_graphs != "auto":
        _fail("train.cuda_graphs", train.cuda_graphs, "true, false or auto")
    if train.max_seconds is not None and train.max_seconds <= 0:
        _fail("train.max_seconds", train.max_seconds, "a positive number of seconds or null")
    per_batch = cfg.data.get("labeled_per_batch") or 0  # auto is checked once the data is read (labelled_per_batch)
    if isinstance(per_batch, int) and not isinstance(per_batch, bool) and per_batch >= train.batch_size:
        _fail("data.labeled_per_batch", per_batch, f"fewer than train.batch_size={train.batch_size}, to leave room for unlabelled points")
    resolve_device(train.device)
    if train.finite_check == "deferred" and not cfg.optim.get("fused"):
        _fail("train.finite_check", str(train.finite_check), "every_step or auto with this optimizer: deferred needs a fused one (optim.fused=true, for Adam)")
    lr = cfg.optim.get("lr")
    if lr is not None and (not isinstance(lr, (int, float)) or not lr > 0):
        _fail("optim.lr", lr, "a positive number")
    for key in ("num_particles", "gap_points", "gap_particles", "ais_points", "ais_steps", "ais_leapfrog", "ais_chains",
                "posterior_samples", "posterior_warmup", "posterior_chains", "forecast_context", "filter_particles"):
        _positive_int(f"evaluation.{key}", evaluation[key])
    _positive_int("evaluation.max_points", evaluation.max_points, allow_none=True)
    _positive_int("evaluation.intervention_context", evaluation.intervention_context, allow_none=True)
    _positive_int("evaluation.chunk_size", evaluation.chunk_size, allow_none=True)
    if not evaluation.memory_budget_mb > 0:
        _fail("evaluation.memory_budget_mb", evaluation.memory_budget_mb, "a positive number of megabytes")
    if not evaluation.ais_step_size > 0:
        _fail("evaluation.ais_step_size", evaluation.ais_step_size, "a positive number")
    _at_least_zero("evaluation.forecast_horizon", evaluation.forecast_horizon, " (0: no forecast)")
    _at_least_zero("evaluation.supervised_only_steps", evaluation.supervised_only_steps, " (0: no supervised-only baseline)")
    _at_least_zero("evaluation.posterior_points", evaluation.posterior_points, " (0: no NUTS)")
    if any(split not in ("train", "valid", "test") for split in evaluation.splits):
        _fail("evaluation.splits", list(evaluation.splits), "a list of 'train', 'valid', 'test'")
    _check_denoising(cfg)
    for key in ("encoder", "decoder"):
        hidden = cfg[key].get("hidden") if key in cfg else None  # model=program has neither
        if hidden is not None and any(isinstance(w, bool) or not isinstance(w, int) or w <= 0 for w in hidden):
            _fail(f"{key}.hidden", list(hidden), "a list of positive layer widths, e.g. [200,200]")


def _check_denoising(cfg) -> None:
    """The corruption's level (checked by the corruption itself), and the denoising
    evaluation's levels, which must lie in the corruption's range."""
    kind = None
    if "corruption" in cfg:
        target = cfg.corruption._target_
        kind = next((c for c in CORRUPTIONS.values() if target.endswith("." + c.__name__)), None)
        if kind is not None:
            kind(cfg.corruption.level)  # a ValueError names corruption.level and its range
    levels = list(cfg.evaluation.denoise_levels)
    maximum = float("inf") if kind is None else kind.maximum
    if not levels or any(not 0 < level <= maximum for level in levels):
        within = "" if kind is None or maximum == float("inf") else f" and at most {maximum:g} for corruption={kind.name}"
        _fail("evaluation.denoise_levels", levels, f"a non-empty list of levels above 0{within}")


def thread_count(setting, launcher=None, cpus: int | None = None) -> int | None:
    """Torch threads for a job: ``setting`` when it is a number; for ``auto``, the cores shared
    out among a sweep's parallel jobs: cores // n_jobs under joblib, the job's cpus_per_task
    under submitit; None (torch's default) for a single run.

    :param launcher: the ``hydra.launcher`` config of the running job, if any.
    """
    if setting != "auto":
        return setting
    cpus = cpus or os.cpu_count() or 1
    if launcher is None:
        return None
    if launcher.get("n_jobs") is not None:  # joblib; -1 means one job per core
        jobs = cpus if launcher.n_jobs < 0 else launcher.n_jobs
        return max(1, cpus // max(1, jobs))
    return launcher.get("cpus_per_task")


def pinned_device(device: torch.device, job_num: int, device_count: int) -> torch.device:
    """Parallel GPU jobs on one machine each take their own GPU (job i → GPU i mod count)."""
    if device.type != "cuda" or device.index is not None or device_count < 2:
        return device
    return torch.device("cuda", job_num % device_count)


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; ``cuda`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or name.split(":")[0] not in ("cpu", "cuda"):
        _fail("train.device", name, "auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name} but no CUDA device is available; use train.device=auto or train.device=cpu")
    return torch.device(name)
