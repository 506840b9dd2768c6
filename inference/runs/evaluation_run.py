"""Evaluation of a trained run: ``evaluate_run`` runs the run's evaluations
(``evaluation.methods``, :mod:`.methods`) split by split, each in a random stream of its own
(seeded by the run's seed, its name and the split), and returns the evaluation section of
``metrics.json``. A training run calls it after training, a re-evaluation
(:mod:`.reevaluation`) on a finished run's checkpoint.
"""

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from ..data import Dataset
from ..estimators import fit_local
from ..estimators.programs import sliced
from ..evaluations import Context, Programs, random_stream
from ..evaluations.overview import draw_figures
from .build import batch_keys
from .methods import SPLITS, Method, applicable, methods_of
from .rundir import fingerprints, write_per_point

__all__ = ["evaluate_run", "evaluations"]

log = logging.getLogger(__name__)


def evaluations(cfg: DictConfig, model, guide, data: Dataset) -> tuple[list[Method], Programs]:
    """The run's evaluations that apply to its programs and data (one asked for that does not
    is refused here, before any training), and what they know of the programs."""
    programs = Programs.of(model, guide, data, batch_keys(model, guide))
    return applicable(methods_of(cfg), programs, data), programs


def evaluate_run(model, guide, data: Dataset, cfg: DictConfig, run_dir: Path, curve: list[dict] = (), chosen=None, world=None) -> dict | None:
    """The evaluation section of ``metrics.json``: per split, what each method on it returned;
    each split's per-point numbers into ``run_dir/per_point.npz``; with ``evaluation.figures``
    the run's figures and the methods' into ``run_dir/plots``.

    In a run on several processes (``world``), every rank calls it: the sharded methods
    (``log_px``) share their points out among the ranks, the others run on rank 0, which alone
    writes and returns the section (None on the other ranks).

    :param chosen: what :func:`evaluations` gave for the run (called here where not given)."""
    methods, programs = chosen or evaluations(cfg, model, guide, data)
    settings, seed = cfg.evaluation, cfg.train.seed
    model.eval(), guide.eval()
    results, per_point, contexts = {}, {}, {}
    points = slice(0, settings.max_points)
    work = [(split, method) for split in SPLITS for method in methods if split in method.splits and data.split(split)[points].shape[0]]
    leader = world is None or world.leader
    if not leader:  # the same sharded methods in the same order as rank 0
        work = [(split, method) for split, method in work if getattr(method.evaluation, "sharded", False)]
    # as the training bar: on a terminal, none in logs and CI; each method's start and time go to the log
    bar = tqdm(total=len(work), desc="evaluation", unit="method", disable=None if cfg.train.progress else True, leave=False)
    for split in dict.fromkeys(split for split, _ in work):
        x = data.split(split)[points]
        context = Context(model, guide, x, sliced(data.batch_extra(split, programs.batch_keys), points), split, data, run_dir, settings, programs, world=world)
        with random_stream(seed, "local_fit", split):
            local_steps = fit_local_guide(model, guide, x, programs)
        for method in (method for s, method in work if s == split):
            bar.set_postfix_str(f"{method.name} on {split}"), log.info(f"evaluating {method.name} on {split} ({x.shape[0]} points)")
            start = time.perf_counter()
            with random_stream(seed, method.name, split):
                out = method.evaluation(dataclasses.replace(context, name=method.name, seed=seed))  # the same results and per_point
            context.results.update(method.placed(out))
            bar.update(), log.debug(f"{method.name} on {split}: {time.perf_counter() - start:.1f} s")
        if local_steps is not None:
            context.results["local_fit_steps"] = local_steps
        results[split], contexts[split] = context.results, context
        if context.per_point:
            per_point[split] = {"index": np.arange(x.shape[0]), "fingerprint": fingerprints(x), **context.per_point}
    bar.close()
    if not leader:
        return None
    if per_point:
        write_per_point(run_dir, per_point)
    if settings.figures:
        with random_stream(seed, "figures"):
            draw_figures(model, guide, data, programs, results, curve, run_dir / "plots")
        for method in methods:
            entry = method.entry(results.get("test", {}))
            if callable(getattr(method.evaluation, "figures", None)) and entry and not entry.get("skipped"):
                with random_stream(seed, method.name, "figures"):
                    method.evaluation.figures(dataclasses.replace(contexts["test"], name=method.name, seed=seed), entry)
    return results


def fit_local_guide(model: torch.nn.Module, guide: torch.nn.Module, x: torch.Tensor, programs: Programs) -> int | None:
    """Fit a local guide's parameters for the points ``x`` with the model fixed, so that they
    can be evaluated; returns the steps taken, or None for an amortized guide."""
    if programs.guide.amortized:
        return None
    guide.add_points(x)
    return fit_local(model, guide, x, max_steps=guide.fit_steps)
