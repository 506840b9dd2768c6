"""Registering a program's networks with Pyro's param store, and leaving it out where nothing
reads the store.

``pyro.module(name, module)`` puts every parameter of ``module`` into Pyro's param store, which
is how ``pyro.infer.SVI`` with a ``pyro.optim`` optimizer, ``JitTrace_ELBO`` and
``poutine.trace(param_only=True)`` find them. It sends one message per parameter through Pyro's
effect handlers on every call of the program, a cost of its own on small networks. The suite's training step takes its parameters from the modules
themselves, so its objective (:class:`inference.training.objectives.LeanTrace_ELBO`) runs the programs
inside :func:`unregistered`. Programs call :func:`register` where they would call
``pyro.module``; anywhere else it is ``pyro.module``.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import pyro
from torch import nn

__all__ = ["register", "unregistered"]

_registering = True


def register(name: str, module: nn.Module) -> None:
    """``pyro.module(name, module)``, except inside :func:`unregistered`."""
    if _registering:
        pyro.module(name, module)


@contextmanager
def unregistered() -> Iterator[None]:
    """Programs run inside this do not register their networks with Pyro's param store: for
    callers that optimize the modules' parameters directly and read nothing from the store."""
    global _registering
    previous, _registering = _registering, False
    try:
        yield
    finally:
        _registering = previous
