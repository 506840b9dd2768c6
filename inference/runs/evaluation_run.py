"""Evaluation of a trained run, and re-evaluation of a finished one.

``evaluate_run`` runs the run's evaluations (``evaluation.methods``, :mod:`.methods`) split by
split, each in a random stream of its own (seeded by the run's seed, its name and the split), and
returns the evaluation section of ``metrics.json``. A training run calls it after training;
``reevaluate`` (``python -m inference.evaluate run=RUN_DIR [evaluation.KEY=VALUE ...]``) loads a
finished run (its config from ``.hydra/``, its checkpoint with ``weights_only=True``), runs its
evaluations as the overrides say, and merges the results into its ``metrics.json``.
"""

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pyro
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ..data import Dataset
from ..estimators import fit_local
from ..estimators.programs import sliced
from ..evaluations import Context, Programs, random_stream
from ..evaluations.overview import draw_figures
from ..schema import typed
from ..training.checkpoint import load_checkpoint
from .build import batch_keys, instantiate, prepared, trackers_of
from .checks import check_config, resolve_device
from .methods import SPLITS, Method, applicable, default_entries, methods_of, shipped_entry
from .rundir import fingerprints, locked, read_metrics, write_metrics, write_per_point

__all__ = ["evaluate_run", "evaluations", "reevaluate"]

log = logging.getLogger(__name__)


def evaluations(cfg: DictConfig, model, guide, data: Dataset) -> tuple[list[Method], Programs]:
    """The run's evaluations that apply to its programs and data (one asked for that does not
    is refused here, before any training), and what they know of the programs."""
    programs = Programs.of(model, guide, data, batch_keys(model, guide))
    return applicable(methods_of(cfg), programs, data), programs


def evaluate_run(model, guide, data: Dataset, cfg: DictConfig, run_dir: Path, curve: list[dict] = (), chosen=None) -> dict:
    """The evaluation section of ``metrics.json``: per split, what each method on it returned;
    each split's per-point numbers into ``run_dir/per_point.npz``; with ``evaluation.figures``
    the run's figures and the methods' into ``run_dir/plots``.

    :param chosen: what :func:`evaluations` gave for the run (called here where not given)."""
    methods, programs = chosen or evaluations(cfg, model, guide, data)
    settings, seed = cfg.evaluation, cfg.train.seed
    model.eval(), guide.eval()
    results, per_point, contexts = {}, {}, {}
    for split in SPLITS:
        here = [method for method in methods if split in method.splits]
        points = slice(0, settings.max_points)
        x = data.split(split)[points]
        if not here or x.shape[0] == 0:
            continue
        context = Context(model, guide, x, sliced(data.batch_extra(split, programs.batch_keys), points), split, data, run_dir, settings, programs)
        with random_stream(seed, "local_fit", split):
            local_steps = fit_local_guide(model, guide, x, programs)
        for method in here:
            with random_stream(seed, method.name, split):
                out = method.evaluation(dataclasses.replace(context, name=method.name, seed=seed))  # the same results and per_point
            context.results.update(out if getattr(method.evaluation, "keys", None) else {method.name: out})
        if local_steps is not None:
            context.results["local_fit_steps"] = local_steps
        results[split], contexts[split] = context.results, context
        if context.per_point:
            per_point[split] = {"index": np.arange(x.shape[0]), "fingerprint": fingerprints(x), **context.per_point}
    if per_point:
        write_per_point(run_dir, per_point)
    if settings.figures:
        with random_stream(seed, "figures"):
            draw_figures(model, guide, data, programs, results, curve, run_dir / "plots")
        for method in methods:
            entry = _entry(method, results.get("test", {}))
            if callable(getattr(method.evaluation, "figures", None)) and entry and not entry.get("skipped"):
                with random_stream(seed, method.name, "figures"):
                    method.evaluation.figures(dataclasses.replace(contexts["test"], name=method.name, seed=seed), entry)
    return results


def _entry(method: Method, split_results: dict) -> dict | None:
    """What ``method`` wrote in a split's results: its one key's value, or all it wrote."""
    keys = getattr(method.evaluation, "keys", None) or (method.name,)
    written = {key: split_results[key] for key in keys if key in split_results}
    return written.get(keys[0]) if len(keys) == 1 else written


def fit_local_guide(model: torch.nn.Module, guide: torch.nn.Module, x: torch.Tensor, programs: Programs) -> int | None:
    """Fit a local guide's parameters for the points ``x`` with the model fixed, so that they
    can be evaluated; returns the steps taken, or None for an amortized guide."""
    if programs.guide.amortized:
        return None
    guide.add_points(x)
    return fit_local(model, guide, x, max_steps=guide.fit_steps)


def reevaluate(run_dir: str | Path, overrides: list[str] = ()) -> dict:
    """Re-run the evaluation of a finished run with ``overrides`` of its ``evaluation`` (or
    ``train.device``) keys, merge the results into its ``metrics.json``, and send them to the
    run's experiment trackers (``logger``), if it has any."""
    run_dir = Path(run_dir)
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: run=... must name a run directory written by inference.train")
    trained = OmegaConf.load(config_file)
    cfg = typed(trained)
    if "methods" not in trained.get("evaluation", {}):  # a run from before evaluation.methods: the default ones
        cfg.evaluation.methods = default_entries()
    overrides = [override.removeprefix("+") for override in overrides]  # a new method: +evaluation.methods.NAME._target_=...
    shipped = [o.split("=", 1)[1] for o in overrides if o.startswith("evaluation/methods=")]  # a shipped one by its file: +evaluation/methods=NAME
    overrides = [o for o in overrides if not o.startswith("evaluation/methods=")]
    for override in overrides:
        key = override.split("=", 1)[0]
        if not (key.startswith("evaluation.") or key == "train.device"):
            raise ValueError(f"{override}: only evaluation.* and train.device can change when re-evaluating a run")
    with open_dict(cfg.evaluation.methods):
        for name in (name.strip() for names in shipped for name in names.strip("[]").split(",")):
            cfg.evaluation.methods[name] = shipped_entry(name, required=True)
        cfg.merge_with_dotlist(overrides)
    check_config(cfg)
    device = resolve_device(cfg.train.device)
    with locked(run_dir), pyro.validation_enabled(False):
        data = instantiate(cfg.data).to(device)
        model, guide = prepared(cfg, data, device)
        state = load_checkpoint(run_dir, map_location=device)
        model.load_state_dict(state["model"]), guide.load_state_dict(state["guide"])
        old = read_metrics(run_dir) if (run_dir / "metrics.json").is_file() else {}
        results = evaluate_run(model, guide, data, cfg, run_dir, old.get("train", {}).get("curve", []))
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
