"""Data: the :class:`Dataset` (splits as tensors on the training device) and its transforms,
the loaders a run names with ``data=...`` (local files only, nothing downloaded), and the
simulated pendulum (:mod:`inference.data.pendulum`), whose frames come with their physical state."""

from . import pendulum
from .files import arrays, images, table
from .dataset import Dataset
from .loaders import binarized_mnist, caltech_silhouettes, digits, fashion_mnist, frey_face, linear_gaussian, mnist

__all__ = [
    "Dataset",
    "arrays",
    "binarized_mnist",
    "caltech_silhouettes",
    "digits",
    "fashion_mnist",
    "frey_face",
    "images",
    "linear_gaussian",
    "mnist",
    "pendulum",
    "table",
]
