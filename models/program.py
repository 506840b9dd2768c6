"""A Pyro program that a user wrote, as the suite's model or guide.

``model=program model.program=PKG.MODULE.NAME`` (with ``guide=program``) trains and evaluates any
Pyro model/guide pair. ``model.program`` names one of:

- a model callable ``model(x)``: a function, or a bound method such as ``vae.model`` of an
  ``nn.Module`` (its networks become the program's, as ``pyro.module`` makes them Pyro's);
- an object with ``.model`` and ``.guide`` (then ``guide=program`` needs no ``guide.program``);
- a factory of such an object: a class, or a function whose required parameters are all among
  ``x_dim``, ``z_dim`` and ``image_shape``; it is called with those it asks for, by name.

:class:`ProgramModule` makes the program a module whatever it is, so that the suite's optimizer,
checkpoints, devices and train/eval modes reach every parameter the program has: its networks,
and the ``pyro.param`` tensors a first trace puts in Pyro's param store (:meth:`ProgramModule.adopt`).
"""

import importlib
import inspect
from collections.abc import Callable
from dataclasses import replace

import torch
from pyro.poutine.messenger import Messenger
from torch import nn

import pyro
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from .capabilities import UNDECLARED, Capabilities, capabilities_of

__all__ = ["FACTORY_ARGUMENTS", "ProgramModule", "load", "program_guide", "program_model"]

# What a factory may ask for by name, and what a run hands it.
FACTORY_ARGUMENTS = ("x_dim", "z_dim", "image_shape")
DATA_PLATE = "data"  # the name the estimators look for (inference.estimators.programs.DATA_PLATE)


class ProgramModule(nn.Module):
    """A Pyro program as an ``nn.Module``: ``forward`` runs it.

    :param program: the program, a callable (a function, a bound method, a module).
    :param owner: the object the program belongs to (the object of ``vae.model``); registered as
        a submodule when it is an ``nn.Module``, so that its networks are this module's.
    :param data_plate: the name the program gives its data plate; renamed to ``"data"`` for the
        estimators when it differs.
    :param batch_keys: the keyword arguments it takes per data point besides x (``model.batch_keys``);
        left empty, those its capabilities declare.
    """

    def __init__(self, program: Callable, owner: object = None, data_plate: str = DATA_PLATE, batch_keys: tuple[str, ...] = ()):
        super().__init__()
        if owner is None and inspect.ismethod(program):
            owner = program.__self__
        self.program = program  # an nn.Module program is registered as a submodule by this
        self.owner = owner  # likewise
        self.data_plate = data_plate
        self.batch_keys = tuple(batch_keys)
        self.store_params = nn.ParameterDict()  # adopted param-store tensors (see adopt)

    @property
    def capabilities(self) -> Capabilities:
        """What the program declares (on itself, or on the object it belongs to)."""
        declared = capabilities_of(self.program)
        declared = declared if declared is not UNDECLARED or self.owner is None else capabilities_of(self.owner)
        return replace(declared, batch_keys=self.batch_keys) if self.batch_keys else declared

    def exact_log_px(self, x: torch.Tensor) -> torch.Tensor:
        """The closed-form log p(x) of a program that declares ``exact_log_px``."""
        return self.owner.exact_log_px(x)

    @torch.no_grad()
    def check_support(self, x: torch.Tensor, extra: dict[str, torch.Tensor] | None = None, chunk: int = 1024) -> None:
        """Raise a ValueError naming the site unless every observation site's distribution, with
        its latents drawn from the program itself, accepts the data (Pyro's support checks).
        ``extra``: the batch keys' tensors for the points of ``x``."""
        for start in range(0, x.shape[0], chunk):
            block = slice(start, start + chunk)
            with pyro.validation_enabled(True), poutine.block():
                trace = poutine.trace(self).get_trace(x[block], **{k: v[block] for k, v in (extra or {}).items()})
                observed = [(n, s) for n, s in trace.nodes.items() if s["type"] == "sample" and s["is_observed"] and not site_is_subsample(s)]
                for name, site in observed:
                    try:
                        site["fn"].log_prob(site["value"])
                    except ValueError as e:
                        raise ValueError(f"the program's observation site {name!r} does not accept the data: {str(e).splitlines()[0]}") from None

    def forward(self, *args, **kwargs):
        if self.data_plate == DATA_PLATE:
            return self.program(*args, **kwargs)
        with _RenamedPlate(self.data_plate, DATA_PLATE):
            return self.program(*args, **kwargs)

    def adopt(self, name: str) -> nn.Parameter:
        """Make the param store's unconstrained tensor ``name`` a parameter of this module, so
        that the optimizer trains it, checkpoints hold it (unconstrained, as a plain tensor) and
        ``.to(device)`` moves it. A network's parameter (``pyro.module`` on a network this
        module does not own) is taken as it is; a ``pyro.param`` tensor becomes an
        ``nn.Parameter`` on the same storage, and the store's entry that parameter, so that
        ``pyro.param(name)`` reads what is trained. Pyro's store has no public way to put a
        given tensor under a name, hence the two private dicts."""
        store = pyro.get_param_store()
        parameter = store._params[name]
        if not isinstance(parameter, nn.Parameter):
            old, parameter = parameter, nn.Parameter(parameter.detach())
            store._params[name] = parameter
            store._param_to_name.pop(old, None)
            store._param_to_name[parameter] = name
        key = name.replace(".", "·")  # module attribute names may not hold dots
        self.store_params[key] = parameter
        return parameter


class _RenamedPlate(Messenger):
    """Rename a plate in the cond-indep stack of every sample site: a program's own name for
    its data plate becomes the one the estimators look for."""

    def __init__(self, old: str, new: str):
        super().__init__()
        self.old, self.new = old, new

    def _process_message(self, msg):
        msg["cond_indep_stack"] = tuple(f._replace(name=self.new) if f.name == self.old else f for f in msg["cond_indep_stack"])


def load(path: str, key: str) -> object:
    """The object at the dotted ``path`` (``PKG.MODULE.NAME``, attributes after the module
    allowed: ``PKG.MODULE.vae.model``); ``key`` is the config key that named it, for errors."""
    if not isinstance(path, str) or not path or path == "???":
        raise ValueError(f"{key} must name a Pyro program as PKG.MODULE.NAME, e.g. {key}=my_models.vae.model; got {path!r}")
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            target = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and not module_name.startswith(e.name):
                raise ValueError(f"{key}={path}: importing {module_name} failed: {e}") from e
            continue  # a shorter prefix may be the module
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                raise ValueError(f"{key}={path}: {module_name} has no {'.'.join(parts[cut:])} ({attribute!r} is missing)")
            target = getattr(target, attribute)
        return target
    raise ValueError(f"{key}={path} does not import: no module {parts[0]!r} on the Python path (run from the folder that holds it, or pip install it)")


def _is_factory(target: object) -> bool:
    if inspect.isclass(target):
        return True
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    required = [name for name, p in parameters.items() if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return bool(set(parameters) & set(FACTORY_ARGUMENTS)) and all(name in FACTORY_ARGUMENTS for name in required)


def _made(target: object, **sizes) -> object:
    """``target`` itself, or what it makes if it is a factory, called with the sizes it asks for."""
    if not _is_factory(target):
        return target
    accepted = inspect.signature(target).parameters
    return target(**{k: v for k, v in sizes.items() if k in accepted})


def _check_takes_batch(program: Callable, key: str, path: str, role: str, batch_keys: tuple[str, ...] = ()) -> None:
    """A program is called as ``program(x, **batch_keys)``: refuse one whose signature cannot take that."""
    try:
        inspect.signature(program).bind(torch.empty(0), **dict.fromkeys(batch_keys))
    except TypeError:
        call = ", ".join(["x", *(f"{k}=..." for k in batch_keys)])
        raise ValueError(
            f"{key}={path}: {role}{inspect.signature(program)} cannot be called as {role}({call}); a {role} takes the batch x "
            f"as its one required argument (other arguments need defaults) and the batch keys (model.batch_keys) by name, "
            f"or {key} names a factory whose arguments are among {', '.join(FACTORY_ARGUMENTS)}"
        ) from None
    except ValueError:  # a builtin without a signature: it will say so when called
        pass


def program_model(
    program: str,
    data_plate: str = DATA_PLATE,
    batch_keys: tuple[str, ...] = (),
    x_dim: int | None = None,
    z_dim: int | None = None,
    image_shape: tuple | None = None,
) -> ProgramModule:
    """The model of ``model.program`` (see the module docstring); ``x_dim``, ``z_dim`` and
    ``image_shape`` are what a factory may ask for, ``batch_keys`` what the program takes per
    data point besides x (the dataset provides them)."""
    target = _made(load(program, "model.program"), x_dim=x_dim, z_dim=z_dim, image_shape=image_shape)
    owner = None
    if hasattr(target, "model"):
        if not callable(getattr(target, "guide", None)):
            raise ValueError(f"model.program={program}: {type(target).__name__} has .model but no .guide; give the guide with guide.program=...")
        owner, target = target, target.model
    elif not callable(target):
        raise ValueError(f"model.program={program} is a {type(target).__name__}, not a Pyro program, an object with .model and .guide, or a factory")
    model = ProgramModule(target, owner=owner, data_plate=data_plate, batch_keys=tuple(batch_keys))
    _check_takes_batch(target, "model.program", program, "model", model.capabilities.batch_keys)
    return model


def program_guide(
    program: str | None = None,
    model: nn.Module | None = None,
    x_dim: int | None = None,
    z_dim: int | None = None,
    image_shape: tuple | None = None,
) -> ProgramModule:
    """The guide of ``guide.program`` (a guide callable, an object with ``.guide`` or a factory of
    one), or with ``guide.program`` unset, the ``.guide`` of the object that ``model.program``
    named (or whose method it named)."""
    if program is None:
        owner = getattr(model, "owner", None)
        if not callable(getattr(owner, "guide", None)):
            raise ValueError(
                "guide=program needs guide.program=PKG.MODULE.NAME (a guide callable), unless model=program names an object "
                "or factory with .model and .guide"
            )
        return ProgramModule(owner.guide, owner=owner, data_plate=model.data_plate, batch_keys=capabilities_of(model).batch_keys)
    target = _made(load(program, "guide.program"), x_dim=x_dim, z_dim=z_dim, image_shape=image_shape)
    owner = target if hasattr(target, "guide") else None
    if owner is not None:
        target = target.guide
    if not callable(target):
        raise ValueError(f"guide.program={program} is a {type(target).__name__}, not a Pyro program")
    batch_keys = capabilities_of(model).batch_keys if model is not None else ()
    _check_takes_batch(target, "guide.program", program, "guide", batch_keys)
    return ProgramModule(target, owner=owner, data_plate=getattr(model, "data_plate", DATA_PLATE), batch_keys=batch_keys)

