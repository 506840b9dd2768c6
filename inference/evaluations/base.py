"""The contract between a run and its evaluations, and the random stream each one draws from.

An evaluation is an object built from its entry in ``evaluation.methods`` (its ``_target_`` and
options) and called once per split it runs on, with a :class:`Context`; it returns a dict of
JSON numbers. What it declares beyond the call is optional (:class:`Evaluation` lists it):
the keys it writes into the split's entry of ``metrics.json`` (without them, its dict lands
under its name), why it cannot take a run's programs and data, its figures and its summary lines.
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyro
import torch
from omegaconf import DictConfig

from models.capabilities import Capabilities, capabilities_of

from ..data import Dataset
from ..estimators import LatentVector, frozen, pairs_within

__all__ = ["Context", "Evaluation", "Programs", "positive_ints", "random_stream", "stream_seed"]


@dataclass(frozen=True)
class Programs:
    """What an evaluation may know of a run's programs before it runs: what they declare, what
    they take per data point besides x, and why their latents are not one real vector per point
    (continuous, unconstrained, under the data plate alone), which AIS, NUTS and some figures need."""

    model: Capabilities
    guide: Capabilities
    batch_keys: tuple[str, ...]
    latent_vector: str | None

    @classmethod
    def of(cls, model, guide, data: Dataset, batch_keys: tuple[str, ...] = ()) -> "Programs":
        """:param batch_keys: what both programs take besides x (checked to agree by the runs layer)."""
        # on training points, the only ones a local guide knows before it is fitted to others;
        # in eval mode, so that a look at the programs is no training pass
        with frozen(model), frozen(guide):
            latent_vector = None if batch_keys else LatentVector.unsupported(model, guide, data.train[:1])
        return cls(capabilities_of(model), capabilities_of(guide), batch_keys, latent_vector)

    @property
    def takes_keys(self) -> str | None:
        """Why a method that calls the programs on x alone cannot take these; None where it can."""
        return f"programs that take x alone; these take {', '.join(self.batch_keys)} per data point too" if self.batch_keys else None

    @property
    def not_vector(self) -> str | None:
        """Why the latents are not one real vector per point, or the programs take batch keys."""
        return self.takes_keys or self.latent_vector


@dataclass
class Context:
    """What an evaluation is called with, for one split.

    :ivar x: the split's points evaluated (its first ``evaluation.max_points``).
    :ivar extra: their batch keys (name → tensor with a row per point), as the programs take them.
    :ivar settings: ``evaluation.*``, the settings every method shares (``num_particles``,
        ``memory_budget_mb``, ``chunk_size``, ``max_points``, ``figures``).
    :ivar results: the split's entry of ``metrics.json`` so far (the methods before this one).
    :ivar per_point: the split's per-point arrays, written to ``per_point.npz`` after the last split.
    :ivar name: the method's name in ``evaluation.methods``; ``seed``: the run's (``train.seed``).
        The call runs in the stream of (seed, name, split); work shared by its splits opens its
        own, ``random_stream(context.seed, context.name, ...)``.
    :ivar world: in a run on several processes, this rank's place
        (:class:`~inference.training.distributed.World`); None on one. A method whose class says
        ``sharded = True`` is called on every rank, and shares its points out among them; the
        others run on rank 0 alone.
    """

    model: torch.nn.Module
    guide: torch.nn.Module
    x: torch.Tensor
    extra: dict
    split: str
    dataset: Dataset
    run_dir: Path
    settings: DictConfig
    programs: Programs
    results: dict = field(default_factory=dict)
    per_point: dict = field(default_factory=dict)
    name: str = ""
    seed: int = 0
    world: object | None = None

    @property
    def plots(self) -> Path:
        return self.run_dir / "plots"

    def pass_size(self, x: torch.Tensor | None = None, extra: dict | None = None) -> int:
        """Particle × point pairs per pass of an estimator on ``x`` (the context's points by
        default): ``evaluation.chunk_size``, or as many as keep its peak tensor memory under
        ``evaluation.memory_budget_mb``."""
        if x is None:
            x, extra = self.x, self.extra
        return self.settings.chunk_size or pairs_within(self.model, self.guide, x, self.settings.memory_budget_mb, extra)


class Evaluation(Protocol):
    """An evaluation: ``__call__`` is all it must have; the rest has defaults (the runs layer
    reads each with ``getattr``): ``keys`` ``None``, the others returning None or nothing."""

    #: the keys it writes into the split's entry of metrics.json; None: its dict goes under its name
    keys: tuple[str, ...] | None

    def __call__(self, context: Context) -> dict: ...

    def unsupported(self, programs: Programs, data: Dataset) -> str | None:
        """Why it cannot take these programs and data (the run refuses it where it was asked
        for, and leaves it out where it was on by default); None where it can."""

    def figures(self, context: Context, entry: dict) -> None:
        """Its figures into ``context.plots``, from the split's ``entry`` it returned
        (with ``evaluation.figures``, on the test split)."""


def stream_seed(seed: int, *names: str) -> int:
    """A seed for the stream of ``names`` (an evaluation's and a split's) within the run's
    ``seed``: the same for the same names, unrelated for others; under 2³², as NumPy needs."""
    digest = hashlib.sha256("/".join([str(seed), *names]).encode()).digest()
    return int.from_bytes(digest[:4], "little")


@contextmanager
def random_stream(seed: int, *names: str) -> Iterator[None]:
    """Torch's (every device's), Python's and NumPy's global random number generators seeded
    for ``names`` within the run's ``seed`` for the duration, then as they were: what one
    evaluation draws depends neither on which others ran nor on their order."""
    state = pyro.util.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    pyro.set_rng_seed(stream_seed(seed, *names))
    try:
        yield
    finally:
        pyro.util.set_rng_state(state)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def positive_ints(expected: str, **options) -> None:
    """Refuse an option that is not a positive integer, naming it and what was ``expected``."""
    for key, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key}={value!r}: expected {expected}")
