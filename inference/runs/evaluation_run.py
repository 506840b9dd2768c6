"""Evaluation of a trained run, and re-evaluation of a finished one.

``evaluate_run`` computes every number of ``metrics.json`` but the training summary: per
split the ELBO, log p̂(x) with its diagnostics (and bits per dimension on discrete data), and
on the test split, as configured, the inference gaps, the linear probe, AIS and BDMC.
A training run calls it after training; ``reevaluate`` (``python -m inference.evaluate
run=RUN_DIR [evaluation.KEY=VALUE ...]``) loads a finished run (its config from ``.hydra/``, its checkpoint with ``weights_only=True``),
re-runs the estimators with the RNG state the run had when its training ended, so that the
same settings give the same numbers, and merges the results into its ``metrics.json``.
"""

import functools
import logging
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from omegaconf import DictConfig, OmegaConf

from guides.denoising import Denoising
from models.capabilities import capabilities_of

from ..data import Dataset
from ..estimators import (
    LatentVector,
    ais,
    bidirectional,
    bits_per_dim,
    evaluate,
    fit_local,
    importance_sampling,
    inference_gaps,
    linear_probe_r2,
    mean_and_stderr,
    pairs_within,
    posterior_mean,
)
from ..estimators.denoising import denoised, denoising_scores
from ..estimators.forecast import ContextFilter, ContextState, forecast, forecast_errors
from ..estimators.intervention import intervened_frames, intervention_errors
from ..estimators.posterior import guide_draws, importance_draws, inference_data, mismatch, nuts, summaries
from ..estimators.programs import rng_kept, sliced
from ..schema import typed
from ..training.checkpoint import load_checkpoint, set_rng_state
from ..training.supervised import supervised_only
from . import figures
from .build import batch_keys, instantiate, intervention_context, prepared, trackers_of
from .checks import check_config, resolve_device
from .rundir import fingerprints, locked, read_metrics, write_metrics, write_per_point

__all__ = ["evaluate_run", "pass_size", "reevaluate", "skipped"]

log = logging.getLogger(__name__)
FEW_EFFECTIVE_PARTICLES = 30  # a filter's median effective sample size below which runs warn


def evaluate_run(
    model: torch.nn.Module, guide: torch.nn.Module, data: Dataset, evaluation: DictConfig, run_dir: Path, curve: list[dict] = ()
) -> dict:
    """The evaluation section of ``metrics.json``: one entry per split of ``evaluation.splits``;
    the figures (of the training ``curve`` too) into ``run_dir/plots``, and with
    ``evaluation.posterior_points`` the NUTS posteriors into ``run_dir/posterior.nc``; each
    split's per-point numbers into ``run_dir/per_point.npz``.

    Programs that take batch keys get them with every split's points; the methods that do not
    pass them yet (gaps, AIS and BDMC, NUTS, the figures that run the programs) are skipped
    for such programs, with the reason."""
    results, per_point = {}, {}
    keys = batch_keys(model, guide)
    classifiers = classifiers_of(guide, data, evaluation)
    for split in evaluation.splits:
        points = slice(0, evaluation.max_points)
        x, extra = data.split(split)[points], sliced(data.batch_extra(split, keys), points)
        if x.shape[0] == 0:
            continue
        start = time.perf_counter()
        local_steps = fit_local_guide(model, guide, x)
        chunk_size = pass_size(model, guide, x, evaluation, extra)
        per_point[split] = {"index": np.arange(x.shape[0]), "fingerprint": fingerprints(x)}
        results[split] = evaluate(
            model, guide, x, num_particles=evaluation.num_particles, chunk_size=chunk_size, prior_proposal=evaluation.prior_proposal,
            extra=extra, per_point=per_point[split],
        )
        results[split]["chunk_size"] = chunk_size
        for name, classify in classifiers.items():
            results[split][name] = accuracy(classify, x, data.labels[split][points])
        results[split]["seconds"] = time.perf_counter() - start
        if local_steps is not None:
            results[split]["local_fit_steps"] = local_steps
        if data.levels is not None and (capabilities_of(model).discrete_x or data.dequantize) and results[split]["log_px"]["mean"] is not None:
            levels = data.levels if data.dequantize else None
            results[split]["bits_per_dim"] = bits_per_dim(results[split]["log_px"]["mean"], data.x_dim, levels)
            results[split]["bits_levels"] = data.levels  # bits of 2-level and of 17-level data do not compare
    if per_point:
        write_per_point(run_dir, per_point)
    takes_keys = f"programs that take x alone; these take {', '.join(keys)} per data point too" if keys else None
    if evaluation.gaps and "test" in results:
        if takes_keys:
            results["test"]["gaps"] = skipped(f"the inference gaps here weigh {takes_keys}")
        else:
            start, gap_x = time.perf_counter(), data.test[: evaluation.gap_points]
            results["test"]["gaps"] = gaps(model, guide, gap_x, evaluation.gap_particles, pass_size(model, guide, gap_x, evaluation))
            results["test"]["gaps"]["seconds"] = time.perf_counter() - start
    if data.factors is not None and "test" in results:
        results["test"]["probe"] = probe(guide, data, evaluation, keys)
    if data.frames and (evaluation.forecast_horizon or evaluation.intervene) and "test" in results:
        results["test"].update(rollouts(model, guide, data, evaluation))
    if callable(getattr(getattr(model, "transition", None), "constants", None)) and data.physics and "test" in results:
        results["test"]["physics"] = learned_physics(model.transition, data.physics)
    if evaluation.ais and "test" in results:
        if takes_keys:
            results["test"]["log_px_ais"] = skipped(f"AIS here anneals {takes_keys}")
        else:
            results["test"].update(annealed(model, guide, data.test[: evaluation.ais_points], evaluation))
    if evaluation.posterior_points and "test" in results:
        if takes_keys:
            results["test"]["posterior"] = skipped(f"NUTS here samples {takes_keys}")
        else:
            results["test"]["posterior"] = gold_standard(model, guide, data.test[: evaluation.posterior_points], evaluation, run_dir)
    denoise = isinstance(guide, Denoising) if evaluation.denoise is None else evaluation.denoise
    if denoise and "test" in results:
        if takes_keys:
            results["test"]["denoise"] = skipped(f"denoising here runs {takes_keys}")
        else:
            x = data.test[: evaluation.max_points]
            results["test"]["denoise"] = denoising_scores(model, guide, x, type(guide.corruption), evaluation.denoise_levels, data.levels == 2)
    if evaluation.figures:  # last: their random draws leave every number above as it would be without them
        draw_figures(model, guide, data, results, curve, run_dir / "plots", takes_keys, evaluation.denoise_levels[:3] if denoise else ())
    return results


def rollouts(model, guide, data: Dataset, evaluation: DictConfig) -> dict:
    """``test.forecast`` and, with ``evaluation.intervene``, ``test.intervention`` of a
    state-space model, from one filtering of the test sequences' context where both have the
    same (``evaluation.intervention_context`` null); or why the forecast was skipped (a program
    of sequences that has no ``transition`` to roll forward)."""
    if not all(hasattr(model, part) for part in ("transition", "decoder", "likelihood")):
        return {"forecast": skipped(f"forecasts roll the model's transition forward, and {type(model).__name__} has none (model=state_space has)")}
    x, out = data.test[: evaluation.max_points], {}
    start = functools.cache(lambda context: filtered_context(model, guide, x, context, evaluation))  # one filtering a context

    if evaluation.forecast_horizon:
        filtered = start(evaluation.forecast_context)
        start_time = time.perf_counter()
        out["forecast"] = {**forecast_errors(model, x, filtered, evaluation.forecast_horizon), "seconds": time.perf_counter() - start_time}
    if evaluation.intervene:
        context = intervention_context(evaluation)
        filtered = start(context)
        start_time, horizon = time.perf_counter(), evaluation.forecast_horizon or data.frames - context
        errors = intervention_errors(model, filtered, data.factors["test"][: evaluation.max_points], data.physics, data.image_shape[0], horizon)
        out["intervention"] = {**errors, "seconds": time.perf_counter() - start_time}
    return out


def filtered_context(model, guide, x: torch.Tensor, context: int, evaluation: DictConfig) -> ContextState:
    """The state after the first ``context`` frames of the sequences ``x``, filtered as
    ``evaluation`` says; with a warning where the particle filter kept few effective particles."""
    start = ContextFilter(str(evaluation.forecast_filter), evaluation.filter_particles)(model, guide, x, context)
    if start.ess is not None and start.ess.median() < FEW_EFFECTIVE_PARTICLES:
        log.warning(
            f"the particle filter of the first {context} frames kept a median of {start.ess.median().item():.0f} effective particles "
            f"of {start.particles}: its state is a few draws, and the rollouts noisy; raise evaluation.filter_particles"
        )
    return start


def learned_physics(transition, physics: dict) -> dict:
    """``test.physics``: each constant the transition learned beside the simulator's, by the
    simulator's names. Point estimates (maximum likelihood within the ELBO): no uncertainty."""
    return {name: {"true": physics[name], "learned": value} for name, value in transition.constants().items()}


def gold_standard(model, guide, x: torch.Tensor, evaluation: DictConfig, run_dir: Path) -> dict:
    """NUTS against the guide on a few test points: ``posterior.nc``, ArviZ summaries as CSV,
    the pair plot (and for a 2-D latent the contour plot); returns the mismatch and NUTS checks."""
    reason = LatentVector.unsupported(model, guide, x)
    if reason:
        return skipped(f"NUTS here samples {reason}")
    start = time.perf_counter()
    nuts_z = nuts(model, x, evaluation.posterior_samples, evaluation.posterior_warmup, evaluation.posterior_chains)
    guide_z = guide_draws(model, guide, x, nuts_z.shape[0] * nuts_z.shape[1])
    importance_z, log_w = importance_draws(model, guide, x, min(evaluation.num_particles, 1000))
    data = inference_data(nuts_z, guide_z, importance_z, log_w)
    data.to_netcdf(str(run_dir / "posterior.nc"))
    tables = summaries(data)
    for name, table in tables.items():
        table.to_csv(run_dir / f"posterior_summary_{name}.csv")
    figures.posterior_pairs(nuts_z, guide_z, run_dir / "plots" / "posterior_pairs.png")
    if nuts_z.shape[-1] == 2:
        figures.posterior_contour(model, guide, x, run_dir / "plots" / "posterior_contour.png")
    return {
        **mismatch(nuts_z, guide_z),
        "points": x.shape[0],
        "nuts_ess_bulk_min": float(tables["nuts"]["ess_bulk"].min()),
        "nuts_r_hat_max": float(tables["nuts"]["r_hat"].max()),
        "seconds": time.perf_counter() - start,
    }


def draw_figures(
    model, guide, data: Dataset, results: dict, curve: list[dict], folder: Path, takes_keys: str | None = None, denoise_levels=()
) -> None:
    """Every figure that the run's data and program allow (image figures need 2-D images, and
    those that move z as one vector need continuous latents under the data plate alone; those
    that run the programs need ones that take x alone, as ``takes_keys`` says they do not); for a
    semi-supervised model and guide (``model=ss_vae``), which run on x alone with y latent, the
    class analogies and the latent space by class; with ``denoise_levels``, the denoising of test
    images corrupted as the guide's training was."""
    x = data.test[:500]
    if curve:
        figures.training_curve(curve, folder / "training_curve.png")
    if "test" in results:
        figures.log_px_against_k(results["test"], folder / "log_px_against_k.png")
    if callable(getattr(guide, "classify", None)) and hasattr(model, "num_classes") and data.labels is not None:
        # a semi-supervised model runs on x alone, its label y then a latent site
        if len(data.image_shape) == 2:
            figures.class_analogies(model, guide, x, data.image_shape, folder / "class_analogies.png")
        figures.latent_by_class(guide, x, data.labels["test"][:500], folder / "latent_by_class.png")
    if takes_keys:
        log.warning(f"skipped: the samples, reconstructions and latent figures, drawn here for {takes_keys}")
        return
    if data.frames:  # a point is a sequence: its figures are the forecasts'
        rollout_figures(model, guide, data, results, folder)
        return
    vector = LatentVector.unsupported(model, guide, x) is None
    if len(data.image_shape) == 2:
        figures.prior_samples(model, x, data.image_shape, folder / "prior_samples.png")
        figures.reconstructions(model, guide, x, data.image_shape, folder / "reconstructions.png")
        if capabilities_of(guide).amortized:  # a local guide knows only the points it was fitted to
            figures.posterior_as_prior(model, guide, data.train, data.image_shape, folder / "posterior_as_prior.png")
        if vector:
            figures.traversals(model, guide, x, data.image_shape, folder / "traversals.png")
    labels = data.labels["test"][:500] if data.labels is not None else None
    if vector:
        figures.latent_means(model, guide, x, folder / "latent_means.png", labels)
    if denoise_levels and len(data.image_shape) == 2:
        clean = data.test[:8]
        noisy = [type(guide.corruption)(level)(clean) for level in denoise_levels]
        figures.denoising(clean, noisy, [denoised(model, guide, n) for n in noisy], denoise_levels, data.image_shape, folder / "denoising.png")


def rollout_figures(model, guide, data: Dataset, results: dict, folder: Path) -> None:
    """For a run whose ``test.forecast`` was computed, the true frames beside the forecast ones
    and an animation of a test sequence beside the model's (seen, then generated); for one whose
    ``test.intervention`` was, the A = 0 truth, the model under do(A = 0) and the model as
    learned. Both from four test sequences, filtered as the entries were."""
    test = results.get("test", {})
    entries = {name: test[name] for name in ("forecast", "intervention") if test.get(name) and not test[name].get("skipped")}
    if not entries or len(data.image_shape) != 2:
        return
    x, starts = data.test[:4], {}

    def start(entry: dict) -> ContextState:  # entries of one context share its filtering
        if entry["context"] not in starts:
            starts[entry["context"]] = ContextFilter.of(entry)(model, guide, x, entry["context"])
        return starts[entry["context"]]

    if "forecast" in entries:
        context = entries["forecast"]["context"]
        predicted = forecast(model, start(entries["forecast"]), len(entries["forecast"]["horizons"]))
        truth = x[:, context : context + predicted.shape[1]]
        figures.forecast_frames(truth, predicted, context, data.image_shape, folder / "forecast.png")
        figures.forecast_animation(x[0], predicted[0], context, data.image_shape, folder / "forecast.gif")
    if "intervention" in entries:
        entry = entries["intervention"]
        frames = intervened_frames(model, start(entry), data.factors["test"][:4], data.physics, data.image_shape[0], len(entry["horizons"]))
        figures.intervention_frames(*frames, entry["context"], data.image_shape, folder / "intervention.png")


def annealed(model, guide, x: torch.Tensor, evaluation: DictConfig) -> dict:
    """AIS on the test points, and BDMC on as many points simulated from the model; for a model
    AIS does not handle, why it was skipped (the run's other results are still written)."""
    reason = LatentVector.unsupported(model, guide, x)
    if reason:
        return {"log_px_ais": skipped(f"AIS here anneals {reason}")}
    options = dict(steps=evaluation.ais_steps, leapfrog=evaluation.ais_leapfrog, step_size=evaluation.ais_step_size, chains=evaluation.ais_chains)
    start = time.perf_counter()
    estimate = ais(model, x, guide=guide if evaluation.ais_start == "guide" else None, **options)
    out = {"log_px_ais": {**mean_and_stderr(estimate.log_px), **options, "start": evaluation.ais_start, "acceptance": estimate.acceptance}}
    out["log_px_ais"]["seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    sandwich = bidirectional(model, x, x.shape[0], **options)
    seed = int(torch.randint(2**62, ()))  # as for the test split: the same numbers for any pass size
    importance = importance_sampling(model, guide, sandwich["x"], evaluation.num_particles, pass_size(model, guide, sandwich["x"], evaluation), seed=seed).log_px
    out["bdmc"] = {
        "lower": mean_and_stderr(sandwich["lower"]),
        "upper": mean_and_stderr(sandwich["upper"]),
        "width": mean_and_stderr(sandwich["upper"] - sandwich["lower"]),
        "log_px_importance": mean_and_stderr(importance),
        "points": x.shape[0],
        "acceptance": sandwich["acceptance"],
        "seconds": time.perf_counter() - start,
    }
    return out


def classifiers_of(guide, data: Dataset, evaluation: DictConfig) -> dict:
    """The classifiers whose accuracy each split reports, by metric name: ``accuracy``, the
    guide's q(y | x), for a guide with a classifier (``classify``) on labelled data; and, where
    the run kept some training labels only (``data.num_labeled``), ``accuracy_supervised_only``,
    the same network trained on those labels alone (``evaluation.supervised_only_steps``)."""
    if not callable(getattr(guide, "classify", None)) or data.labels is None:
        return {}
    out = {"accuracy": guide.classify}
    kept = "mask" in (data.extra or {}).get("train", {})
    if kept and evaluation.supervised_only_steps and isinstance(getattr(guide, "classifier", None), torch.nn.Module):
        start = time.perf_counter()
        with rng_kept(data.train.device):  # every other number stays as it would be without it
            out["accuracy_supervised_only"] = supervised_only(guide.classifier, data, evaluation.supervised_only_steps)
        log.info(f"supervised-only baseline: {evaluation.supervised_only_steps} steps on the labelled points in {time.perf_counter() - start:.1f} s")
    return out


@torch.no_grad()
def accuracy(classify, x: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of points whose most probable class under ``classify(x)`` (logits) is their label."""
    return (classify(x).argmax(-1).cpu() == labels.cpu()).float().mean().item()


def skipped(reason: str) -> dict:
    """The entry of a method that cannot take this program: the rest of the run goes on."""
    log.warning(f"skipped: {reason}")
    return {"skipped": True, "reason": reason}


def pass_size(model: torch.nn.Module, guide: torch.nn.Module, x: torch.Tensor, evaluation: DictConfig, extra: dict | None = None) -> int:
    """Particle × point pairs per pass of the estimator: ``evaluation.chunk_size``, or as many
    as keep its peak tensor memory under ``evaluation.memory_budget_mb`` (``extra``: the
    programs' batch keys for the points of ``x``)."""
    return evaluation.chunk_size or pairs_within(model, guide, x, evaluation.memory_budget_mb, extra)


def fit_local_guide(model: torch.nn.Module, guide: torch.nn.Module, x: torch.Tensor) -> int | None:
    """Fit a local guide's parameters for the points ``x`` with the model fixed, so that they
    can be evaluated; returns the steps taken, or None for an amortized guide."""
    if capabilities_of(guide).amortized:
        return None
    guide.add_points(x)
    return fit_local(model, guide, x, max_steps=guide.fit_steps)


def gaps(model: torch.nn.Module, guide: torch.nn.Module, x: torch.Tensor, num_particles: int, chunk_size: int) -> dict:
    """The inference-gap decomposition, or why it could not run (a guide without an encoder).
    A guide trained on corrupted inputs is, in eval mode, the guide it wraps: its gaps are that
    guide's."""
    guide = guide.guide if isinstance(guide, Denoising) else guide
    try:
        return inference_gaps(model, guide, x, num_particles, chunk_size=chunk_size)
    except ValueError as e:
        return skipped(f"no inference gaps: {e}")


def probe(guide: torch.nn.Module, data: Dataset, evaluation: DictConfig, keys: tuple[str, ...] = ()) -> dict:
    """R² of a linear read-out of the true factors from the posterior means (trained on the
    training frames, scored on the test frames); ``keys``: the guide's batch keys. For
    sequences, the means of the sites ``{probe_site}_1 … _T`` read out the factors of each frame."""
    points = slice(0, evaluation.max_points)
    site = tuple(f"{evaluation.probe_site}_{t}" for t in range(1, data.frames + 1)) if data.frames else evaluation.probe_site
    means, factors = {}, {}
    for split in ("train", "test"):
        mean = posterior_mean(guide, data.split(split)[points], site, extra=sliced(data.batch_extra(split, keys), points))
        truth = data.factors[split][: len(mean)]
        means[split], factors[split] = mean.reshape(-1, mean.shape[-1]), truth.reshape(-1, truth.shape[-1])  # frames as points
    r2 = linear_probe_r2(means["train"], factors["train"], means["test"], factors["test"])
    return {"r2": dict(zip(data.factor_names, r2.tolist())), "r2_mean": r2.mean().item(), "site": evaluation.probe_site}


def reevaluate(run_dir: str | Path, overrides: list[str] = ()) -> dict:
    """Re-run the evaluation of a finished run with ``overrides`` of its ``evaluation`` (or
    ``train.device``) keys, merge the results into its ``metrics.json``, and send them to the
    run's experiment trackers (``logger``), if it has any."""
    run_dir = Path(run_dir)
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: run=... must name a run directory written by inference.train")
    cfg = typed(OmegaConf.load(config_file))
    for override in overrides:
        key = override.split("=", 1)[0]
        if not (key.startswith("evaluation.") or key == "train.device"):
            raise ValueError(f"{override}: only evaluation.* and train.device can change when re-evaluating a run")
    cfg.merge_with_dotlist(list(overrides))
    check_config(cfg)
    device = resolve_device(cfg.train.device)
    with locked(run_dir), pyro.validation_enabled(False):
        data = instantiate(cfg.data).to(device)
        model, guide = prepared(cfg, data, device)
        state = load_checkpoint(run_dir, map_location=device)
        model.load_state_dict(state["model"]), guide.load_state_dict(state["guide"])
        set_rng_state(state["rng"])  # where the run's own evaluation began
        old = read_metrics(run_dir) if (run_dir / "metrics.json").is_file() else {}
        results = evaluate_run(model, guide, data, cfg.evaluation, run_dir, old.get("train", {}).get("curve", []))
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
