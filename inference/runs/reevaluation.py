"""Re-evaluation of a finished run: ``reevaluate`` (``python -m inference.evaluate run=RUN_DIR
[evaluation.KEY=VALUE ...]``) loads the run (its config from ``.hydra/``, its checkpoint with
``weights_only=True``), runs its evaluations as the overrides say, each in its own random
stream, so that its own settings reproduce its numbers, and merges the results into its
``metrics.json``.
"""

import contextlib
from pathlib import Path

import pyro
import torch
from omegaconf import OmegaConf, open_dict

from ..training.distributed import ended, started
from ..schema import typed
from .build import instantiate, trackers_of, trained
from .checks import check_config, resolve_device, thread_count
from .evaluation_run import evaluate_run
from .methods import completed, default_entries, shipped_entry
from .rundir import locked, read_metrics, write_metrics

__all__ = ["reevaluate"]


def reevaluate(run_dir: str | Path, overrides: list[str] = ()) -> dict:
    """Re-run the evaluation of a finished run with ``overrides`` of its ``evaluation`` (or
    ``train.device``, ``train.progress``, ``train.threads``) keys, merge the results into its ``metrics.json``, and send them to the
    run's experiment trackers (``logger``), if it has any."""
    run_dir = Path(run_dir)
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: run=... must name a run directory written by inference.train")
    trained = OmegaConf.load(config_file)
    cfg = typed(trained)
    if "methods" not in trained.get("evaluation", {}):  # a run from before evaluation.methods: the default ones
        cfg.evaluation.methods = default_entries()
    completed(cfg.evaluation.methods)  # options added to shipped methods since the run was trained
    overrides = [override.removeprefix("+") for override in overrides]  # a new method: +evaluation.methods.NAME._target_=...
    shipped = [o.split("=", 1)[1] for o in overrides if o.startswith("evaluation/methods=")]  # a shipped one by its file: +evaluation/methods=NAME
    overrides = [o for o in overrides if not o.startswith("evaluation/methods=")]
    for override in overrides:
        key = override.split("=", 1)[0]
        if not (key.startswith("evaluation.") or key in ("train.device", "train.progress", "train.threads")):
            raise ValueError(f"{override}: only evaluation.*, train.device, train.progress and train.threads can change when re-evaluating a run")
    with open_dict(cfg.evaluation.methods):
        for name in (name.strip() for names in shipped for name in names.strip("[]").split(",")):
            cfg.evaluation.methods[name] = shipped_entry(name, required=True)
        cfg.merge_with_dotlist(overrides)
    check_config(cfg)
    # the run's own train.threads was for its training, perhaps beside other jobs: only an override counts
    threads = thread_count(cfg.train.threads) if any(o.startswith("train.threads=") for o in overrides) else None
    if threads is not None:
        torch.set_num_threads(threads)
    # launched by torchrun: the ranks share out the points of the sharded methods, rank 0 writes
    device = resolve_device(cfg.train.device)
    world = started("auto", cfg.train.distributed_timeout, device, cfg.train.seed)
    try:
        return _reevaluated(cfg, run_dir, device if world is None else world.device, world)
    finally:
        ended(world)


def _reevaluated(cfg, run_dir: Path, device: torch.device, world) -> dict:
    leader = world is None or world.leader
    with locked(run_dir) if leader else contextlib.nullcontext(), pyro.validation_enabled(False):
        data = instantiate(cfg.data).to(device)
        model, guide = trained(cfg, data, run_dir, device)
        old = read_metrics(run_dir) if (run_dir / "metrics.json").is_file() else {}
        results = evaluate_run(model, guide, data, cfg, run_dir, old.get("train", {}).get("curve", []), world=world)
        if not leader:
            return {}
        metrics = _merged(old, results)
        write_metrics(run_dir, metrics)
        # the run's own trackers get the new numbers (MLflow: in the run it trained in, by .mlflow_run)
        trackers = trackers_of(cfg)
        config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        with trackers.run(run_dir, config, metrics.get("train", {}).get("epochs", 0), sweep=None):
            trackers.results(metrics, run_dir)
    return metrics


def _merged(old: dict, new: dict) -> dict:
    """``old`` with ``new`` written over it, key by key: what was not recomputed stays."""
    merged = dict(old)
    for key, value in new.items():
        merged[key] = _merged(old[key], value) if isinstance(value, dict) and isinstance(old.get(key), dict) else value
    return merged
