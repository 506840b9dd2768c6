"""A training run: ``train(cfg, run_dir)`` trains a model and guide with SVI, evaluates them,
and writes the run directory (metrics.json, checkpoint.pt); with ``train.resume=true`` it
continues a run from its checkpoint. ``python -m inference.train`` is its Hydra entry point.
"""

import contextlib
import logging
from pathlib import Path

import pyro
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from pyro.infer import JitTrace_ELBO

from models.capabilities import capabilities_of

from ..training import fit, new_progress, parameters_of
from ..training.callbacks import TimeLimit, ValidationElbo
from ..training.capture import capturable, capture_problem
from ..data import Dataset
from ..training.checkpoint import CHECKPOINT, Checkpoints, atomic_write, config_differences, load_checkpoint, restore
from ..training.distributed import World, ended, started
from ..training.loop import labelled_per_batch
from ..training.objectives import GraphTrace_ELBO, KLWeighted, WithClassification
from .build import choose_likelihood, guide_name, instantiate, model_name, objective_name, prepared, trackers_of
from .trackers import Trackers
from .checks import check_config, pinned_device, resolve_device, thread_count
from .evaluation_run import evaluate_run, evaluations
from .rundir import METRICS, RunDirectoryTaken, locked, read_metrics, write_metrics
from .summary import summary

__all__ = ["RESUMABLE", "resume_mode", "resumed", "train"]

log = logging.getLogger(__name__)


def resumed(run_dir: Path, config: dict, objects: tuple, device: torch.device) -> dict:
    """Load the run's checkpoint into ``objects`` and the RNGs; returns its progress. Refuses a
    config that differs from the checkpoint's in more than the keys of ``RESUMABLE``."""
    state = load_checkpoint(run_dir, map_location=device)
    saved_root = state["config"].get("data", {}).get("root")
    if isinstance(saved_root, str) and not Path(saved_root).is_absolute():  # a run from before data.root was recorded absolute
        state["config"]["data"]["root"] = str(Path(saved_root).resolve())
    differences = config_differences(state["config"], config, ignore=RESUMABLE)
    if differences:
        raise ValueError(
            f"cannot resume {run_dir}: the config differs from the checkpoint's in {'; '.join(differences)}. "
            "Resume with the run's own overrides (only train.epochs, train.max_seconds and evaluation.* may change), or start a new run"
        )
    progress = restore(state, *objects)
    log.info(f"resuming {run_dir} after epoch {progress['epoch']} ({progress['steps']} steps)")
    return progress


# Keys that may change when a run is resumed: how long it trains, the resume switch itself, the
# evaluation, which runs after training (and which a later version may give new keys), and the
# experiment trackers, which watch the run without changing it, and how the step runs (where the
# finite check waits, fused kernels), not what it computes.
RESUMABLE = ("train.epochs", "train.max_seconds", "train.resume", "evaluation.", "logger.", "train.finite_check", "optim.fused", "train.cuda_graphs")


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train, evaluate and write the run directory; returns the metrics written.

    With ``train.resume=true`` it continues the run in ``run_dir`` from its checkpoint. With
    ``train.resume=auto`` (for finishing a killed sweep) it returns the metrics of a finished
    run without touching it, continues one with a checkpoint, and starts one with neither.
    """
    check_config(cfg)
    device = resolve_device(cfg.train.device)
    world = started(cfg.train.distributed, cfg.train.distributed_timeout, device, cfg.train.seed)
    try:
        run_dir = Path(run_dir)
        if world is not None:  # rank 0's directory is the run's (each rank's Hydra named one by its own clock)
            run_dir = joined(run_dir, Path(world.agreed(str(run_dir))), world)
        leader = world is None or world.leader
        with locked(run_dir) if leader else contextlib.nullcontext():  # one process writes a run directory
            resume = resume_mode(cfg.train.resume, run_dir) if leader else None
            if leader and not resume and (run_dir / CHECKPOINT).exists():
                raise RunDirectoryTaken(
                    f"{run_dir} already holds a checkpoint: continue that run with train.resume=true (or auto), "
                    "or train into a new directory (hydra.run.dir=...)"
                )
            if world is not None:
                resume = world.agreed(resume)
            if resume == "finished":
                log.info(f"{run_dir} holds a finished run ({METRICS}): skipped (train.resume=auto)")
                return read_metrics(run_dir)
            # Pyro's and torch's argument checks run on every distribution of every step; the data's
            # support is checked once up front instead.
            with pyro.validation_enabled(cfg.train.validate):
                return _train(cfg, run_dir, resume, device if world is None else world.device, world)
    finally:
        ended(world)


def joined(own: Path, run_dir: Path, world: World) -> Path:
    """``run_dir``, rank 0's directory, for a rank whose Hydra made ``own``: this rank's log file
    (``train.rankN.log``, conf/hydra/default.yaml) moves there, and ``own`` goes if it is empty."""
    if own.resolve() == run_dir.resolve():
        return run_dir
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == own.resolve()]:
        root.removeHandler(handler)
        handler.close()
        old, new = Path(handler.baseFilename), run_dir / Path(handler.baseFilename).name
        if old.exists():
            old.replace(new)
        moved = logging.FileHandler(new, mode="a")
        moved.setFormatter(handler.formatter), moved.setLevel(handler.level)
        root.addHandler(moved)
    with contextlib.suppress(OSError):
        own.rmdir()  # only if empty: whatever else is there stays
    log.info(f"rank {world.rank}: the run's directory is rank 0's, {run_dir}")
    return run_dir


def record_resolved(cfg: DictConfig, data: Dataset, run_dir: Path, record: bool) -> None:
    """What the run settled once its data was loaded, in ``cfg`` (so in the checkpoint, where a
    resume compares it) and, for a new run, in ``.hydra/config.yaml``, which a re-evaluation
    reads: a user's data (``data.path``) absolute with its content's hash, so that a
    re-evaluation finds the file from any directory and refuses one that changed, a folder of
    files (``data.root``) and another run whose features are the data (``data.run``) absolute,
    so that a re-evaluation, or a run on this run's features, finds them from any directory,
    and the likelihood that ``likelihood=auto`` chose, so that it makes the same choice."""
    origin = dict(data.origin or {})
    root = cfg.data.get("root")
    if isinstance(root, str) and not Path(root).is_absolute():  # the loader read it from the launch directory
        origin["root"] = str(Path(root).resolve())
    for key, value in origin.items():
        cfg.data[key] = value
    auto = choose_likelihood(cfg, data)
    written = run_dir / ".hydra" / "config.yaml"
    if record and (origin or auto) and written.is_file():
        recorded = OmegaConf.load(written)
        for key, value in origin.items():
            recorded.data[key] = value
        if auto:
            recorded.likelihood = cfg.likelihood
        atomic_write(written, lambda f: f.write(OmegaConf.to_yaml(recorded).encode()))


def check_distributable(cfg: DictConfig, world: World) -> None:
    """Refuse at start what a run on several processes cannot do."""
    if cfg.train.batch_size % world.size:
        raise ValueError(
            f"train.batch_size={cfg.train.batch_size} is the whole batch, which the {world.size} processes share: it must be a multiple of "
            f"{world.size}; set train.batch_size={cfg.train.batch_size // world.size * world.size or world.size}"
        )


def resume_mode(setting: bool | str, run_dir: Path) -> bool | str:
    """What ``train.resume`` means for ``run_dir``: ``true`` and ``false`` as given; ``auto``
    is ``"finished"`` where ``metrics.json`` was written (the last thing a run writes), ``True``
    where a checkpoint was, ``False`` in an empty directory. ``inference.train``'s choice of
    ``.hydra/`` or ``.hydra_resume/`` follows it."""
    if setting != "auto":
        return setting
    if (run_dir / METRICS).exists():
        return "finished"
    return (run_dir / CHECKPOINT).exists()


def _launched_job():
    """The running Hydra job's launcher config, number and sweep directory, or (None, 0, None)
    outside a sweep."""
    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:  # not under Hydra (tests compose configs themselves)
        return None, 0, None
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None, 0, None
    return hydra_cfg.launcher, int(hydra_cfg.job.num), hydra_cfg.sweep.dir


def check_objective(cfg: DictConfig, loss, model, guide) -> None:
    """Refuse a recorded objective for a program that declares it cannot be recorded (or, for
    ``jit_trace_elbo``, that takes batch keys), and the semi-supervised objective for a guide
    without a classifier."""
    if isinstance(loss, WithClassification) and not capabilities_of(guide).classifier:
        raise ValueError(
            f"objective=ss_elbo adds the classification term -log q(y|x), but guide={guide_name(cfg)} has no classifier "
            "(classify(x)); use guide=ss_vae with model=ss_vae"
        )
    inner = getattr(loss, "loss", loss)  # KLWeighted wraps the ELBO
    if not isinstance(inner, (JitTrace_ELBO, GraphTrace_ELBO)):
        return
    objective = "jit_trace_elbo" if isinstance(inner, JitTrace_ELBO) else "graph_trace_elbo"
    keys = capabilities_of(model).batch_keys
    if objective == "jit_trace_elbo" and keys:
        raise ValueError(
            f"objective=jit_trace_elbo takes tensors as positional arguments only, but the programs take {', '.join(keys)} by name "
            "(batch keys), which it would compile anew for every batch; use objective=trace_elbo"
        )
    for role, program, name in (("guide", guide, guide_name(cfg)), ("model", model, model_name(cfg))):
        reason = capabilities_of(program).untraceable
        if reason:
            raise ValueError(f"{role}={name} cannot be traced by objective={objective}: {reason}; use objective=trace_elbo")


def use_cuda_graphs(cfg: DictConfig, device: torch.device, loss, optimizer: torch.optim.Optimizer, model, guide, world: World | None = None):
    """Whether to capture the step as a CUDA graph (``train.cuda_graphs``), and the objective to
    train with: ``auto`` captures where it can, ``true`` refuses at start where it cannot,
    naming why and what works. On CUDA, ``objective=trace_elbo`` is captured through its
    recorded form (``graph_trace_elbo``: the same loss and gradients), so that the default run
    takes the captured step by itself. Returns ``(loss, capture)``."""
    setting = cfg.train.cuda_graphs
    if setting is False:
        return loss, False
    unrecordable = [
        f"{role}={name} cannot be recorded or captured ({reason}); use train.cuda_graphs=false and objective=trace_elbo"
        for role, program, name in (("guide", guide, guide_name(cfg)), ("model", model, model_name(cfg)))
        if (reason := capabilities_of(program).untraceable)
    ]
    if keys := capabilities_of(model).batch_keys:
        unrecordable.append(f"the programs take {', '.join(keys)} by name (batch keys), which a captured step does not pass; use train.cuda_graphs=false")
    if world is not None:
        unrecordable.append("the run is on several processes, whose step sums the gradients over them (train.distributed); use train.cuda_graphs=false")
    recorded = loss.recorded() if isinstance(loss, KLWeighted) else None
    candidate = recorded or loss  # taken only where the step is captured: the eager step keeps the lean path
    problem = capture_problem(device, candidate, optimizer, str(cfg.train.finite_check), objective_name(cfg), (unrecordable or [None])[0])
    if problem and setting is True:
        raise ValueError(f"train.cuda_graphs=true captures each training step as a CUDA graph, but {problem}")
    if problem:
        if device.type == "cuda":
            log.info(f"train.cuda_graphs={setting}: the step is not captured: {problem}")
        return loss, False
    if recorded is not None:
        log.info(
            f"train.cuda_graphs={setting}: the lean Trace_ELBO (objective=trace_elbo) is recorded as a graph "
            "(graph_trace_elbo: the same loss and gradients) and each step captured"
        )
    return candidate, True


def _train(cfg: DictConfig, run_dir: Path, resume: bool, device: torch.device, world: World | None = None) -> dict:
    launcher, job_num, sweep = _launched_job()
    threads = thread_count(cfg.train.threads, launcher)
    if threads is not None:
        torch.set_num_threads(threads)
    if launcher is not None and world is None:
        device = pinned_device(device, job_num, torch.cuda.device_count())
        log.info(f"sweep job {job_num}: {torch.get_num_threads()} torch threads on {device}")
    leader, size = world is None or world.leader, 1 if world is None else world.size
    if world is not None:
        check_distributable(cfg, world)
    pyro.set_rng_seed(cfg.train.seed)
    data = instantiate(cfg.data).to(device)
    record_resolved(cfg, data, run_dir, record=not resume and leader)
    if data.labeled_per_batch == "auto":
        log.info(f"data.labeled_per_batch=auto: {labelled_per_batch(data, cfg.train.batch_size)} labelled points in each batch of {cfg.train.batch_size}, each about once an epoch")
    model, guide = prepared(cfg, data, device)
    if world is not None:
        world.same_parameters(parameters_of(model, guide))
    optimizer = instantiate(cfg.optim)(parameters_of(model, guide))
    scheduler = instantiate(cfg.schedule)(optimizer)
    loss, cuda_graphs = use_cuda_graphs(cfg, device, instantiate(cfg.objective), optimizer, model, guide, world)
    check_objective(cfg, loss, model, guide)
    chosen = evaluations(cfg, model, guide, data)  # an evaluation asked for that cannot run is refused before training
    if isinstance(loss, WithClassification):  # the paper's weight of the classification term, from the data
        labelled = data.batch_extra("train", ("mask",))["mask"]
        loss.fit_to(data.train.shape[0], int(labelled.sum()))

    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # plain values: weights_only loading
    checkpoints = Checkpoints(
        run_dir, (model, guide, optimizer, scheduler), config,
        on_nan=cfg.train.on_nan, lr_factor=cfg.train.rollback_lr_factor, max_rollbacks=cfg.train.max_rollbacks, every=cfg.train.checkpoint_every,
        write=leader,
    )
    start = resumed(run_dir, config, (model, guide, optimizer, scheduler), device) if resume else None
    if start is not None and start.get("world_size", 1) != size:
        raise ValueError(
            f"cannot resume {run_dir} on {size} process{'es' if size > 1 else ''}: it trained on {start.get('world_size', 1)}, "
            "whose Monte Carlo streams it continues; resume it with as many (torchrun --nproc_per_node=N), or start a new run"
        )
    if cuda_graphs:  # after loading a checkpoint, whose groups replace the optimizer's, and before the first save
        capturable(optimizer)
    checkpoints.save(start or {**new_progress(), "world_size": size})  # the first last-good state: a NaN may come at step 1
    trackers = trackers_of(cfg) if leader else Trackers([])  # rank 0 reports the run
    with trackers.run(run_dir, config, start and start["epoch"], sweep):
        metrics = {"train": fit(
            model, guide, data, optimizer,
            epochs=cfg.train.epochs,
            batch_size=cfg.train.batch_size,
            log_every=cfg.train.log_every,
            progress=cfg.train.progress,
            loss=loss,
            scheduler=scheduler,
            start=checkpoints.last["progress"],
            # the row filled (by rank 0 alone), then read
            callbacks=[*([ValidationElbo(model, guide, data)] if leader else []), TimeLimit(cfg.train.max_seconds), checkpoints, trackers],
            deferred_check={"auto": None, "every_step": False, "deferred": True}[cfg.train.finite_check],
            cuda_graphs=cuda_graphs,
            world=world,
        )}
        metrics["train"]["cuda_graphs"] = cuda_graphs  # the step this run took: captured, or eager
        if not leader:  # its share of the sharded evaluations; rank 0 writes the run directory
            evaluate_run(model, guide, data, cfg, run_dir, metrics["train"]["curve"], chosen, world)
            return metrics
        checkpoints.require_saved()
        metrics.update(evaluate_run(model, guide, data, cfg, run_dir, metrics["train"]["curve"], chosen, world))
        write_metrics(run_dir, metrics)
        trackers.results(metrics, run_dir)
    log.info(summary(metrics, run_dir))
    return metrics
