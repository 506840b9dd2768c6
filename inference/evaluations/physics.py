"""The constants a physics transition learned, beside the simulator's."""

from ..data import Dataset
from ..data.pendulum import PendulumSimulator
from .base import Context, Programs

__all__ = ["LearnedPhysics"]


class LearnedPhysics:
    """``physics``: each constant the transition learned beside the simulator's, by the
    simulator's names. Point estimates (maximum likelihood within the ELBO): no uncertainty. A
    rival law's constants that it holds at zero or at a given value are marked ``fixed``."""

    keys = ("physics",)

    def unsupported(self, programs: Programs, data: Dataset) -> str | None:
        if not programs.model.learned_constants:
            return "it needs a transition that learns the simulator's constants (transition=physics)"
        if not isinstance(data.simulator, PendulumSimulator):
            return f"it needs data from the pendulum's simulator (data=pendulum_sequences), which data={data.name} is not"
        return None

    def __call__(self, context: Context) -> dict:
        true = context.dataset.simulator.constants
        transition = context.model.transition
        fixed = getattr(transition, "fixed", set())  # a rival law's constants held at zero or a given value: not learned
        return {
            "physics": {
                name: {"true": true[name], "learned": value, **({"fixed": True} if name in fixed else {})}
                for name, value in transition.constants().items()
            }
        }
