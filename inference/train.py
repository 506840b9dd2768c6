"""Entry point: ``python -m inference.train [overrides]`` trains a model and guide with SVI,
evaluates them, and writes the run directory (metrics.json, checkpoint.pt, .hydra/).

``train(cfg, run_dir)`` does the work and is what tests call; ``main`` is the Hydra wrapper.
"""

import functools
import inspect
import logging
import shutil
from pathlib import Path

import hydra
import pyro
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf
from pyro.infer import JitTrace_ELBO

from .checkpoint import Checkpoints, config_differences, restore
from .config import check_config, pinned_device, resolve_device, thread_count
from .data import Dataset
from .estimators import log_importance_weights
from .evaluate import evaluate_run, summary
from .objectives import GraphTrace_ELBO
from .rundir import CHECKPOINT, FAILURE_MARK, load_checkpoint, locked, write_metrics
from .training import fit, new_progress, parameters_of

log = logging.getLogger(__name__)


def instantiate(node: DictConfig):
    """Hydra's instantiate, but a component's own ValueError or missing-file error reaches the
    user as it was raised, rather than wrapped in Hydra's InstantiationException."""
    try:
        return hydra_instantiate(node)
    except InstantiationException as e:
        if isinstance(e.__cause__, (ValueError, OSError)):
            raise e.__cause__ from None
        raise


def bind(factory: functools.partial, **available) -> functools.partial:
    """Hand a partial config the run-time values its target asks for by name (``z_dim``,
    ``x_dim``, ``image_shape``, ``guide``) and nothing else: a component declares what it
    needs in its signature, so a new one plugs in without changes here."""
    accepted = inspect.signature(factory).parameters
    return functools.partial(factory, **{k: v for k, v in available.items() if k in accepted})


def build(cfg: DictConfig, data: Dataset) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Instantiate the model and guide of ``cfg``, sized from the data and ``z_dim``.

    A prior may borrow the guide (the VampPrior uses its encoder), and a guide may borrow the
    prior (guide=prior) or the model (guide=semi_amortized); whichever asks is built second.
    A local guide (guide=local) gets the training points, which must then stay fixed.
    """
    image_shape = data.image_shape
    make_prior = bind(instantiate(cfg.prior), z_dim=cfg.z_dim, x_dim=data.x_dim)
    make_guide = bind(
        instantiate(cfg.guide),
        encoder=bind(instantiate(cfg.encoder), image_shape=image_shape),
        x_dim=data.x_dim,
        z_dim=cfg.z_dim,
        points=data.train,  # a local guide's parameters are per training point
    )
    if "points" in inspect.signature(make_guide).parameters and (data.binarize == "dynamic" or data.dequantize):
        redrawn = "data.binarize=fixed" if data.binarize == "dynamic" else "data.dequantize=false"
        raise ValueError(
            f"guide={guide_name(cfg)} keeps parameters for each training point, so the training data "
            f"must stay fixed, but data={data.name} redraws it every epoch; set {redrawn}"
        )
    make_model = functools.partial(
        instantiate(cfg.model), decoder=bind(instantiate(cfg.decoder), image_shape=image_shape), likelihood=instantiate(cfg.likelihood), x_dim=data.x_dim
    )
    if "guide" in inspect.signature(make_prior).parameters:
        guide = make_guide()
        model = make_model(prior=make_prior(guide=guide))
    else:
        prior = make_prior()
        model = make_model(prior=prior)
        guide = bind(make_guide, prior=prior, model=model)()
    return model, guide


def resume(run_dir: Path, config: dict, objects: tuple, device: torch.device) -> dict:
    """Load the run's checkpoint into ``objects`` and the RNGs; returns its progress. Refuses a
    config that differs from the checkpoint's in more than the keys of ``RESUMABLE``."""
    state = load_checkpoint(run_dir, map_location=device)
    differences = config_differences(state["config"], config, ignore=RESUMABLE)
    if differences:
        raise ValueError(
            f"cannot resume {run_dir}: the config differs from the checkpoint's in {'; '.join(differences)}. "
            f"Resume with the run's own overrides (only {', '.join(RESUMABLE[:2])} may change), or start a new run"
        )
    progress = restore(state, *objects)
    log.info(f"resuming {run_dir} after epoch {progress['epoch']} ({progress['steps']} steps)")
    return progress


def guide_name(cfg: DictConfig) -> str:
    """The guide's name as the user chose it (``local`` for ``guide=local``)."""
    try:
        return HydraConfig.get().runtime.choices["guide"]
    except ValueError:  # not under Hydra (tests compose configs themselves)
        return cfg.guide._target_.rsplit(".", 1)[-1]


def check_support(model: torch.nn.Module, data: Dataset) -> None:
    """Check every split, as the model will see it, against the likelihood's support."""
    for name in ("train", "valid", "test"):
        split = data.train_epoch() if name == "train" else data.split(name)  # one draw if dynamic
        if split.shape[0] == 0:
            continue
        try:
            model.likelihood.check_support(split)
        except ValueError as e:
            raise ValueError(f"data={data.name}, {name} split: {e}") from None


# conf/hydra/default.yaml: where Hydra writes a run's config, so a resume cannot overwrite the original's.
OmegaConf.register_new_resolver("run_config_dir", lambda resume: ".hydra_resume" if resume else ".hydra", replace=True)

# Keys that may change when a run is resumed: how long it trains, and the resume switch itself.
RESUMABLE = ("train.epochs", "train.max_seconds", "train.resume")


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train, evaluate and write the run directory; returns the metrics written.

    With ``train.resume=true`` it continues the run in ``run_dir`` from its checkpoint.
    """
    check_config(cfg)
    run_dir = Path(run_dir)
    if not cfg.train.resume and (run_dir / CHECKPOINT).exists():
        raise ValueError(
            f"{run_dir} already holds a checkpoint: continue that run with train.resume=true, "
            "or train into a new directory (hydra.run.dir=...)"
        )
    # Pyro's and torch's argument checks cost about a tenth of a small training step
    # (BENCHMARKS.md); the data's support is checked once up front instead.
    with locked(run_dir), pyro.validation_enabled(cfg.train.validate):
        return _train(cfg, run_dir)


def _launched_job():
    """The running Hydra job's launcher config and number, or (None, 0) outside a sweep."""
    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:  # not under Hydra (tests compose configs themselves)
        return None, 0
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None, 0
    return hydra_cfg.launcher, int(hydra_cfg.job.num)


def _train(cfg: DictConfig, run_dir: Path) -> dict:
    launcher, job_num = _launched_job()
    threads = thread_count(cfg.train.threads, launcher)
    if threads is not None:
        torch.set_num_threads(threads)
    device = resolve_device(cfg.train.device)
    if launcher is not None:
        device = pinned_device(device, job_num, torch.cuda.device_count())
        log.info(f"sweep job {job_num}: {torch.get_num_threads()} torch threads on {device}")
    pyro.set_rng_seed(cfg.train.seed)
    data = instantiate(cfg.data).to(device)
    model, guide = build(cfg, data)
    check_support(model, data)
    model.to(device), guide.to(device)
    # A dry run: sites and shapes. On training points, the only ones a local guide knows yet
    # (and which are then fixed), or on test points, which are in the likelihood's support.
    log_importance_weights(model, guide, (data.test if getattr(guide, "amortized", True) else data.train)[:2], num_particles=1)
    optimizer = instantiate(cfg.optim)(parameters_of(model, guide))
    scheduler = instantiate(cfg.schedule)(optimizer)
    loss = instantiate(cfg.objective)
    reason, inner = getattr(guide, "untraceable", None), getattr(loss, "loss", loss)
    if reason and isinstance(inner, (JitTrace_ELBO, GraphTrace_ELBO)):
        objective = "jit_trace_elbo" if isinstance(inner, JitTrace_ELBO) else "graph_trace_elbo"
        raise ValueError(f"guide={guide_name(cfg)} cannot be traced by objective={objective}: {reason}; use objective=trace_elbo")

    config = OmegaConf.to_container(cfg, resolve=True)
    checkpoints = Checkpoints(
        run_dir, (model, guide, optimizer, scheduler), config,
        on_nan=cfg.train.on_nan, lr_factor=cfg.train.rollback_lr_factor, max_rollbacks=cfg.train.max_rollbacks,
    )
    start = resume(run_dir, config, (model, guide, optimizer, scheduler), device) if cfg.train.resume else None
    checkpoints.save(start or new_progress())  # the first last-good state: a NaN may come at step 1
    metrics = {"train": fit(
        model, guide, data, optimizer,
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        log_every=cfg.train.log_every,
        progress=cfg.train.progress,
        loss=loss,
        scheduler=scheduler,
        max_seconds=cfg.train.max_seconds,
        start=checkpoints.last["progress"],
        checkpoint_every=cfg.train.checkpoint_every,
        checkpoint=checkpoints.save,
        on_non_finite=checkpoints.on_non_finite,
    )}

    metrics.update(evaluate_run(model, guide, data, cfg.evaluation, run_dir, metrics["train"]["curve"]))
    write_metrics(run_dir, metrics)
    log.info(summary(metrics, run_dir))
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        train(cfg, run_dir)
    except Exception as e:
        # into the job's log file, where inference.compare finds why a job of a sweep failed
        log.error(f"{FAILURE_MARK} {type(e).__name__}: {e}".splitlines()[0], exc_info=True)
        if HydraConfig.get().mode == RunMode.RUN and not cfg.train.resume:
            _remove_if_only_hydra_files(run_dir)
        raise


def _remove_if_only_hydra_files(run_dir: Path) -> None:
    """A single run rejected before it wrote anything (a bad value, a missing file) leaves no
    directory behind: Hydra made it, with the config and the log, before the checks could run.
    The error is on the terminal. A sweep's jobs keep theirs, for compare to report."""
    ours = [p for p in run_dir.iterdir() if p.name not in (".hydra", f"{HydraConfig.get().job.name}.log")]
    if not ours:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
