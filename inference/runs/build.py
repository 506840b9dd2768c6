"""Objects from a composed config: the dataset, model and guide that a run trains and evaluates.

Hydra builds each component from its ``_target_``; :func:`build` hands each what it asks for by
name (sizes from the data, the prior to a guide that borrows it), so that a new prior,
likelihood or guide plugs in with its YAML file alone.
"""

import functools
import inspect

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig

from ..data import Dataset

__all__ = ["bind", "build", "check_support", "guide_name", "instantiate"]


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
