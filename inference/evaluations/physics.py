"""The constants a physics transition learned, beside the simulator's."""

from ..data import Dataset
from ..data.pendulum import PendulumSimulator
from .base import Context, Programs

__all__ = ["LearnedPhysics"]


class LearnedPhysics:
    """``physics``: each constant the transition learned beside the simulator's, by the
    simulator's names. Point estimates (maximum likelihood within the ELBO): no uncertainty."""

    keys = ("physics",)

    def unsupported(self, programs: Programs, data: Dataset) -> str | None:
        if not programs.model.learned_constants:
            return "it needs a transition that learns the simulator's constants (transition=physics)"
        if not isinstance(data.simulator, PendulumSimulator):
            return f"it needs data from the pendulum's simulator (data=pendulum_sequences), which data={data.name} is not"
        return None

    def __call__(self, context: Context) -> dict:
        true = context.dataset.simulator.constants
        return {"physics": {name: {"true": true[name], "learned": value} for name, value in context.model.transition.constants().items()}}
