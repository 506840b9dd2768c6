"""Pyro guide programs: variational posteriors q(z|x), each with its encoder; and Denoising,
any of them trained on corrupted inputs; and the structured guide of sequence models."""

from .denoising import Denoising
from .flow import AmortizedFlow
from .full_rank import AmortizedFullRank
from .hierarchical import HierarchicalGuide
from .local import LocalNormal, PointTable
from .normal import AmortizedNormal
from .prior import PriorGuide
from .semi_amortized import SemiAmortizedNormal
from .sequence import SequenceGuide
from .ss_vae import SemiSupervisedGuide

__all__ = [
    "AmortizedFlow",
    "AmortizedFullRank",
    "AmortizedNormal",
    "Denoising",
    "HierarchicalGuide",
    "LocalNormal",
    "PointTable",
    "PriorGuide",
    "SemiAmortizedNormal",
    "SemiSupervisedGuide",
    "SequenceGuide",
]
