"""What training optimizes: every parameter of the programs, wherever a program keeps it.

The shipped programs are ``nn.Module``s that own their networks. A user's program may also
keep parameters in Pyro's param store, through ``pyro.param`` or ``pyro.module`` on a network
it does not own; :func:`adopt_store_parameters` finds them from a first trace, as Pyro's SVI
does, and makes each a parameter of the :class:`~models.program.ProgramModule` whose program
read it, so that the optimizer, checkpoints and devices reach it like any other.
"""

import pyro
import torch
from torch import nn

from models.program import ProgramModule

from ..estimators.programs import Extra, replayed_traces

__all__ = ["adopt_store_parameters", "parameters_of"]


def parameters_of(*modules: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters of all modules, each once (a prior may share the encoder)."""
    unique = {id(p): p for m in modules for p in m.parameters() if p.requires_grad}
    return list(unique.values())


def adopt_store_parameters(model: nn.Module, guide: nn.Module, x: torch.Tensor, extra: Extra | None = None) -> list[str]:
    """Trace ``guide(x)`` and ``model(x)`` replayed on it once, and make every param-store
    tensor they read that neither module owns a parameter of the program that read it (the
    guide's first). Call it before the optimizer is made and before a checkpoint is loaded;
    the RNG is left as it was. Pyro's store keeps values across fits in one process, as with
    SVI: call ``pyro.clear_param_store()`` between unrelated ones. ``extra``: the programs'
    batch keys for the points of ``x``.

    :returns: the param-store names adopted.
    """
    guide_trace, model_trace = replayed_traces(model, guide, x, **(extra or {}))
    owned = {id(p) for p in parameters_of(model, guide)}
    store = dict(pyro.get_param_store().named_parameters())
    adopted = []
    for program, trace in ((guide, guide_trace), (model, model_trace)):
        for name, site in trace.nodes.items():
            if site["type"] != "param" or id(store[name]) in owned:
                continue
            if not isinstance(program, ProgramModule):
                role = "guide" if program is guide else "model"
                raise ValueError(
                    f"the {role} reads pyro.param {name!r}, which none of its modules owns, so training would not reach it; "
                    f"wrap the program: models.program.ProgramModule({role}_fn)"
                )
            owned.add(id(program.adopt(name)))
            adopted.append(name)
    return adopted
