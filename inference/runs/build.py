"""Objects from a composed config: the dataset, model and guide that a run trains and evaluates.

Hydra builds each component from its ``_target_``; :func:`build` hands each what it asks for by
name (sizes from the data, the prior to a guide that borrows it), so that a new prior,
likelihood or guide plugs in with its YAML file alone.
"""

import functools
import inspect
import logging

import pyro
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf

from guides.denoising import Denoising, NoCorruption
from models.capabilities import capabilities_of
from models.likelihoods import auto_choice

from ..data import Dataset
from ..estimators import log_importance_weights
from ..hydra_app import config_group
from ..estimators.programs import sliced
from ..training import adopt_store_parameters
from ..training.checkpoint import load_checkpoint
from .trackers import Trackers

__all__ = ["PARTS", "batch_keys", "bind", "build", "build_program", "check_support", "choose_likelihood", "guide_name", "instantiate", "model_name", "prepared", "trackers_of"]


log = logging.getLogger(__name__)


def instantiate(node: DictConfig, **options):
    """Hydra's instantiate, but a component's own ValueError or missing-file error reaches the
    user as it was raised, rather than wrapped in Hydra's InstantiationException."""
    try:
        return hydra_instantiate(node, **options)
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


# The groups a model assembled from parts takes; a model config whose target takes none of them
# is a whole program (model=program) and its config leaves them out (conf/model/program.yaml).
PARTS = ("prior", "likelihood", "decoder", "encoder")


def build(cfg: DictConfig, data: Dataset) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Instantiate the model and guide of ``cfg``, sized from the data and ``z_dim``.

    A prior may borrow the guide (the VampPrior uses its encoder), and a guide may borrow the
    prior (guide=prior) or the model (guide=semi_amortized, guide=program); whichever asks is
    built second. A local guide (guide=local) gets the training points, which must then stay
    fixed. A whole program (model=program) is built by :func:`build_program`. A corruption
    (``corruption=...``) wraps the guide last (:func:`corrupted`).
    """
    make_model = instantiate(cfg.model)
    if not {"prior", "decoder", "likelihood"} & set(inspect.signature(make_model).parameters):
        model, guide = build_program(cfg, data, make_model)
    else:
        model, guide = _build_from_parts(cfg, data, make_model)
    check_sequences(cfg, data, model, guide)
    return model, corrupted(cfg, guide)


def check_sequences(cfg: DictConfig, data: Dataset, model: torch.nn.Module, guide: torch.nn.Module) -> None:
    """Refuse a model of sequences on data of single points and the reverse, and a guide that
    does not take what its model takes."""
    model_takes, guide_takes = capabilities_of(model).sequences, capabilities_of(guide).sequences
    if data.frames and not model_takes:
        raise ValueError(
            f"data={data.name} holds sequences of {data.frames} frames, but model={model_name(cfg)} takes single points; "
            "use model=state_space guide=sequence (or a program that declares Capabilities(sequences=True))"
        )
    if model_takes and not data.frames:
        raise ValueError(
            f"model={model_name(cfg)} takes sequences of frames, but data={data.name} holds single points; "
            "use data=pendulum_sequences (or a model of single points, model=vae)"
        )
    if model_takes != guide_takes:
        raise ValueError(
            f"model={model_name(cfg)} takes {'sequences' if model_takes else 'single points'} but guide={guide_name(cfg)} takes "
            f"{'sequences' if guide_takes else 'single points'}; "
            f"pair {'model=state_space with guide=sequence' if model_takes else 'it with a guide of single points, e.g. guide=normal'}"
        )


def corrupted(cfg: DictConfig, guide: torch.nn.Module) -> torch.nn.Module:
    """The guide, trained on inputs corrupted as ``corruption=...`` says (the denoising
    criterion), or as it is with ``corruption=none``."""
    corruption = instantiate(cfg.corruption) if "corruption" in cfg else NoCorruption()
    return guide if isinstance(corruption, NoCorruption) else Denoising(guide, corruption)


def _build_from_parts(cfg: DictConfig, data: Dataset, make_model: functools.partial) -> tuple[torch.nn.Module, torch.nn.Module]:
    missing = [part for part in PARTS if part not in cfg]
    if missing:
        raise ValueError(f"model={model_name(cfg)} is assembled from parts, but the config has no {', '.join(missing)}; choose one with {missing[0]}=...")
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
    # a likelihood is handed what it asks for: x_dim (a dispersion per dimension), the data's values (likelihood=auto)
    likelihood = bind(instantiate(cfg.likelihood, _partial_=True), x_dim=data.x_dim, values=data.values, levels=data.levels)()
    make_model = functools.partial(make_model, decoder=bind(instantiate(cfg.decoder), image_shape=image_shape), likelihood=likelihood, x_dim=data.x_dim)
    if "transition" in inspect.signature(make_model).parameters:  # a sequence model
        if cfg.get("transition") is None:
            raise ValueError(f"model={model_name(cfg)} needs a transition p(z_t | z_(t-1)): add transition=neural, linear or physics")
        make_model = functools.partial(make_model, transition=bind(instantiate(cfg.transition), frame_interval=data.frame_interval))
    if "guide" in inspect.signature(make_prior).parameters:
        guide = make_guide()
        model = make_model(prior=make_prior(guide=guide))
    else:
        prior = make_prior()
        model = make_model(prior=prior)
        guide = bind(make_guide, prior=prior, model=model)()
    return model, guide


def choose_likelihood(cfg: DictConfig, data: Dataset) -> bool:
    """``likelihood=auto`` made concrete in ``cfg``: the option that fits the data's values
    (conf/likelihood/NAME.yaml, as ``likelihood=NAME`` gives it) takes its place, so that the
    run's config and checkpoint name the choice and a re-evaluation makes the same one.
    Returns whether there was a choice to make."""
    if cfg.get("likelihood") is None or cfg.likelihood.get("_target_") != "models.likelihoods.auto":
        return False
    target = f"models.{auto_choice(data.values, data.levels).__name__}"
    options = {f.name.removesuffix(".yaml"): f.read_text() for f in config_group("likelihood").iterdir() if f.name.endswith(".yaml")}
    name, text = next((name, text) for name, text in sorted(options.items()) if OmegaConf.create(text).get("_target_") == target)
    cfg.likelihood = OmegaConf.create(text)
    log.info(f"likelihood=auto: data={data.name} holds {data.values or 'its'} values, so the run takes likelihood={name}")
    return True


def build_program(cfg: DictConfig, data: Dataset, make_model: functools.partial) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A whole program's model and guide (model=program): the parts' groups do not apply, and
    an override that brings one back is refused; a factory gets the sizes it asks for."""
    parts = [part for part in PARTS if part in cfg]
    if parts:
        raise ValueError(
            f"the model is a whole Pyro program (model=program), so {', '.join(f'{p}=...' for p in parts)} does not apply "
            f"(the program has its own {', '.join(parts)}); drop the override"
        )
    sizes = dict(x_dim=data.x_dim, z_dim=cfg.z_dim, image_shape=data.image_shape)
    model = bind(make_model, **sizes)()
    make_guide = instantiate(cfg.guide)
    if "encoder" in inspect.signature(make_guide).parameters:
        raise ValueError(
            f"guide={guide_name(cfg)} is built around an encoder network, which a whole Pyro program (model=program) does not configure; "
            "use guide=program (the program's own guide, or guide.program=PKG.MODULE.NAME)"
        )
    return model, bind(make_guide, model=model, **sizes)()


def _choice(cfg: DictConfig, group: str) -> str:
    """The option of ``group`` as the user chose it (``local`` for ``guide=local``)."""
    try:
        return HydraConfig.get().runtime.choices[group]
    except ValueError:  # not under Hydra (tests compose configs themselves)
        return cfg[group]._target_.rsplit(".", 1)[-1]


def guide_name(cfg: DictConfig) -> str:
    return _choice(cfg, "guide")


def model_name(cfg: DictConfig) -> str:
    return _choice(cfg, "model")


def objective_name(cfg: DictConfig) -> str:
    return _choice(cfg, "objective")


def trackers_of(cfg: DictConfig) -> Trackers:
    """The run's experiment trackers (the ``logger`` group); none for a run whose config predates it."""
    return Trackers([instantiate(tracker) for tracker in cfg.get("logger", {}).values()])


def prepared(cfg: DictConfig, data: Dataset, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The model and guide of ``cfg`` built from an empty param store, checked against the data,
    on ``device``, with whatever parameters a first trace puts in Pyro's param store made
    theirs: ready for the optimizer, or for a checkpoint to be loaded into."""
    pyro.clear_param_store()  # a run's parameters are its own, not left by an earlier one in this process
    model, guide = build(cfg, data)
    keys = batch_keys(model, guide)
    check_support(model, data, keys)
    model.to(device), guide.to(device)
    # A dry run: sites and shapes, and the programs' param-store parameters. On training points,
    # the only ones a local guide knows yet (and which are then fixed), or on test points,
    # which are in the likelihood's support.
    split = "test" if capabilities_of(guide).amortized else "train"
    x, extra = data.split(split)[:2], sliced(data.batch_extra(split, keys), slice(0, 2))
    log_importance_weights(model, guide, x, num_particles=1, extra=extra)
    adopt_store_parameters(model, guide, x, extra)
    return model, guide


def trained(cfg: DictConfig, data: Dataset, run_dir, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The model and guide of the finished run in ``run_dir`` (whose config is ``cfg``): built by
    :func:`prepared`, with its checkpoint's parameters loaded."""
    model, guide = prepared(cfg, data, device)
    state = load_checkpoint(run_dir, map_location=device)
    model.load_state_dict(state["model"]), guide.load_state_dict(state["guide"])
    return model, guide


def batch_keys(model: torch.nn.Module, guide: torch.nn.Module) -> tuple[str, ...]:
    """What the programs take per data point besides x (``Capabilities.batch_keys``): the
    model's, which the guide must take too, as Pyro calls a model and its guide alike."""
    model_keys, guide_keys = capabilities_of(model).batch_keys, capabilities_of(guide).batch_keys
    if set(model_keys) != set(guide_keys):
        model_takes, guide_takes = (f"x and {', '.join(keys)}" if keys else "x alone" for keys in (model_keys, guide_keys))
        raise ValueError(
            f"the model takes {model_takes} per data point, but the guide takes {guide_takes}; Pyro calls a model and its "
            "guide with the same arguments, so pair the model with a guide that takes the same batch keys (guide=ss_vae for model=ss_vae, guide=program for a program)"
        )
    return model_keys


def check_support(model: torch.nn.Module, data: Dataset, keys: tuple[str, ...] = ()) -> None:
    """Check every split, as the model will see it (with its batch ``keys``), against the
    likelihood's support."""
    for name in ("train", "valid", "test"):
        split = data.train_epoch() if name == "train" else data.split(name)  # one draw if dynamic
        if split.shape[0] == 0:
            continue
        extra = data.batch_extra(name, keys)
        try:
            model.check_support(split, extra)
        except ValueError as e:
            raise ValueError(f"data={data.name}, {name} split: {e}") from None
