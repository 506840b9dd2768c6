"""Checks of a composed config's values, run before any work so that a bad override fails fast.

Unknown keys are refused by Hydra itself (the composed config is in struct mode); this module
checks the values of the public keys and names the key, what arrived and what is expected.
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


def check_config(cfg) -> None:
    """Raise ``ValueError`` naming the first invalid value of the public keys."""
    _positive_int("z_dim", cfg.z_dim)
    _positive_int("train.epochs", cfg.train.epochs)
    _positive_int("train.batch_size", cfg.train.batch_size)
    _positive_int("train.log_every", cfg.train.log_every)
    if isinstance(cfg.train.seed, bool) or not isinstance(cfg.train.seed, int) or cfg.train.seed < 0:
        _fail("train.seed", cfg.train.seed, "a non-negative integer")
    _positive_int("train.checkpoint_every", cfg.train.checkpoint_every)
    if cfg.train.on_nan not in ("stop", "rollback"):
        _fail("train.on_nan", cfg.train.on_nan, "stop or rollback")
    factor = cfg.train.rollback_lr_factor
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
        _fail("train.rollback_lr_factor", factor, "a number between 0 and 1")
    if isinstance(cfg.train.max_rollbacks, bool) or not isinstance(cfg.train.max_rollbacks, int) or cfg.train.max_rollbacks < 0:
        _fail("train.max_rollbacks", cfg.train.max_rollbacks, "a non-negative integer")
    threads = cfg.train.threads
    if threads != "auto" and (isinstance(threads, bool) or not isinstance(threads, int) or threads <= 0):
        _fail("train.threads", threads, "auto or a positive integer")
    for key in ("progress", "validate"):
        if not isinstance(cfg.train[key], bool):
            _fail(f"train.{key}", cfg.train[key], "true or false")
    if not isinstance(cfg.train.resume, bool) and cfg.train.resume != "auto":
        _fail("train.resume", cfg.train.resume, "true, false or auto")
    budget = cfg.train.max_seconds
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0):
        _fail("train.max_seconds", budget, "a positive number of seconds or null")
    per_batch = cfg.data.get("labeled_per_batch") or 0
    if isinstance(per_batch, int) and not isinstance(per_batch, bool) and per_batch >= cfg.train.batch_size:
        _fail("data.labeled_per_batch", per_batch, f"fewer than train.batch_size={cfg.train.batch_size}, to leave room for unlabelled points")
    resolve_device(cfg.train.device)
    lr = cfg.optim.get("lr")
    if lr is not None and (not isinstance(lr, (int, float)) or not lr > 0):
        _fail("optim.lr", lr, "a positive number")
    _positive_int("evaluation.num_particles", cfg.evaluation.num_particles)
    _positive_int("evaluation.max_points", cfg.evaluation.max_points, allow_none=True)
    _positive_int("evaluation.chunk_size", cfg.evaluation.chunk_size, allow_none=True)
    budget = cfg.evaluation.memory_budget_mb
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
        _fail("evaluation.memory_budget_mb", budget, "a positive number of megabytes")
    _positive_int("evaluation.gap_points", cfg.evaluation.gap_points)
    _positive_int("evaluation.gap_particles", cfg.evaluation.gap_particles)
    for key in ("ais_points", "ais_steps", "ais_leapfrog", "ais_chains"):
        _positive_int(f"evaluation.{key}", cfg.evaluation[key])
    step = cfg.evaluation.ais_step_size
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0:
        _fail("evaluation.ais_step_size", step, "a positive number")
    if cfg.evaluation.ais_start not in ("prior", "guide"):
        _fail("evaluation.ais_start", cfg.evaluation.ais_start, "prior or guide")
    _positive_int("evaluation.posterior_samples", cfg.evaluation.posterior_samples)
    _positive_int("evaluation.posterior_warmup", cfg.evaluation.posterior_warmup)
    _positive_int("evaluation.posterior_chains", cfg.evaluation.posterior_chains)
    _positive_int("evaluation.forecast_context", cfg.evaluation.forecast_context)
    horizon = cfg.evaluation.forecast_horizon
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 0:
        _fail("evaluation.forecast_horizon", horizon, "a non-negative integer (0: no forecast)")
    steps = cfg.evaluation.supervised_only_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        _fail("evaluation.supervised_only_steps", steps, "a non-negative integer (0: no supervised-only baseline)")
    points = cfg.evaluation.posterior_points
    if isinstance(points, bool) or not isinstance(points, int) or points < 0:
        _fail("evaluation.posterior_points", points, "a non-negative integer (0: no NUTS)")
    for key in ("prior_proposal", "gaps", "ais", "figures", "intervene"):
        if not isinstance(cfg.evaluation[key], bool):
            _fail(f"evaluation.{key}", cfg.evaluation[key], "true or false")
    for split in cfg.evaluation.splits:
        if split not in ("train", "valid", "test"):
            _fail("evaluation.splits", list(cfg.evaluation.splits), "a list of 'train', 'valid', 'test'")
    _check_denoising(cfg)
    for key in ("encoder", "decoder"):
        hidden = cfg[key].get("hidden") if key in cfg else None  # model=program has neither
        if hidden is not None and any(isinstance(w, bool) or not isinstance(w, int) or w <= 0 for w in hidden):
            _fail(f"{key}.hidden", list(hidden), "a list of positive layer widths, e.g. [200,200]")


def _check_denoising(cfg) -> None:
    """The corruption's level (checked by the corruption itself), and the denoising
    evaluation's switch and levels, which must lie in the corruption's range."""
    kind = None
    if "corruption" in cfg:
        target = cfg.corruption._target_
        kind = next((c for c in CORRUPTIONS.values() if target.endswith("." + c.__name__)), None)
        if kind is not None:
            kind(cfg.corruption.level)  # a ValueError names corruption.level and its range
    denoise = cfg.evaluation.denoise
    if denoise is not None and not isinstance(denoise, bool):
        _fail("evaluation.denoise", denoise, "true, false or null (null: on when the run has a corruption)")
    if denoise and kind is None:
        raise ValueError(
            "evaluation.denoise=true corrupts the test set as the run's corruption does, but the run has corruption=none; "
            "choose one (corruption=salt_pepper, gaussian or mask; with corruption.level=0 it trains on clean inputs)"
        )
    levels = list(cfg.evaluation.denoise_levels)
    maximum = float("inf") if kind is None else kind.maximum
    if not levels or any(isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level <= maximum for level in levels):
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
