"""Pyro guide programs: amortized variational posteriors q(z|x), each with its encoder."""

from .hierarchical import HierarchicalGuide
from .normal import AmortizedNormal

__all__ = ["AmortizedNormal", "HierarchicalGuide"]
