"""The constants a physics transition learned, beside the simulator's."""

from ..data import Dataset
from .base import Context, Programs

__all__ = ["LearnedPhysics"]


class LearnedPhysics:
    """``physics``: each constant the transition learned beside the simulator's, by the
    simulator's names. Point estimates (maximum likelihood within the ELBO): no uncertainty."""

    keys = ("physics",)

    def unsupported(self, programs: Programs, data: Dataset) -> str | None:
        if not programs.model.learned_constants:
            return "it needs a transition that learns the simulator's constants (transition=physics)"
        return None if data.physics else f"it needs data from a simulator with known constants, which data={data.name} is not"

    def __call__(self, context: Context) -> dict:
        physics = context.dataset.physics
        return {"physics": {name: {"true": physics[name], "learned": value} for name, value in context.model.transition.constants().items()}}
