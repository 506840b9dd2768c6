"""Datasets: each split is one float tensor, held whole on the training device.

A loader returns a :class:`Dataset` with ``train``, ``valid`` and ``test`` tensors of shape
``(N, x_dim)``, or ``(N, T, x_dim)`` for sequences of T frames (see :class:`Dataset`). Gray
images are scaled to [0, 1], their L levels becoming k/(L−1); then one
transform may decide what the model sees:

- ``binarize="dynamic"``: each epoch draws fresh x ~ Bernoulli(pixel) for training, while the
  valid and test sets are binarized once with a fixed seed (the IWAE paper's protocol);
- ``binarize="fixed"``: every split binarized once with a fixed seed;
- ``dequantize=True``: uniform dequantization (Theis et al. 2016), x = (k + u)/L with
  u ~ U(0, 1), fresh each epoch for training and drawn once, with a fixed seed, for valid and
  test. A density p on the dequantized data then bounds the probability of the discrete data,
  log P(k) ≥ E_u[log p((k + u)/L)] − D log L, which is how bits per dimension are reported.

Each dataset declares its ``levels`` (2 for binary images, 256 for 8-bit, ``None`` for real
values); the likelihoods check the data they are given against their support.

The loaders of :mod:`inference.data.loaders` and the pendulum build their splits with
:func:`transformed`.

**Batch keys.** A program may take keyword arguments per data point besides x, say
``model(x, y=None)`` with class labels ``y``: it declares their names (``batch_keys`` of its
:class:`~models.capabilities.Capabilities`, or ``model.batch_keys`` for ``model=program``) and
the dataset provides them, one tensor per key and split whose first dimension is the split's
points (:meth:`Dataset.batch_extra`). Training and every estimator slice them with x and call
both programs as ``program(x_batch, **extra_batch)``, as Pyro calls a model and its guide with
the same arguments. A dataset with class labels provides ``y`` (long); a loader may provide
more keys through ``extra``.
"""

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

__all__ = ["BINARIZE_MODES", "SPLITS", "Dataset", "split_indices", "transformed", "with_labels_kept"]

BINARIZE_MODES = ("none", "dynamic", "fixed")
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Dataset:
    """Train/valid/test splits as ``(N, x_dim)`` float tensors (``(N, T, x_dim)`` for sequences).

    :ivar image_shape: the shape of one example as an image, ``(H, W)`` gray, e.g. ``(28, 28)``,
        or ``(3, H, W)`` in colour (channel first, as the flat points hold it); ``(x_dim,)`` for
        data that is not an image (:attr:`images`).
    :ivar levels: how many discrete values the data takes (2 once binarized, 256 for 8-bit
        images); ``None`` for real values.
    :ivar binarize: ``"dynamic"`` when ``train`` holds pixel probabilities to be binarized
        afresh every epoch (see :meth:`train_epoch`).
    :ivar dequantize: whether ``train`` holds the levels k/(L−1) to be dequantized afresh
        every epoch, and valid and test hold dequantized values (k + u)/L.
    :ivar labels: class labels where the data has them (digits, MNIST), per split an ``(N,)``
        CPU tensor; figures colour by them.
    :ivar extra: per split, the per-point tensors a program may take by name besides x (see
        "Batch keys" above), on the data's device; ``y`` needs no entry where ``labels`` exist.
    :ivar factors: ground-truth latent factors where the data has them, per split an
        ``(N, F)`` CPU tensor whose columns ``factor_names`` names (the pendulum's state).
    :ivar labeled_per_batch: in the semi-supervised setting (:func:`with_labels_kept`), how many
        labelled points every training batch holds beside the unlabelled ones; 0 for batches
        drawn from all points alike; ``"auto"`` for as many as show each labelled point about
        once an epoch, which depends on the batch size
        (:func:`~inference.training.loop.labelled_per_batch`).
    :ivar frame_interval: for sequences, the seconds between successive frames (what a
        transition of the law behind them integrates over).
    :ivar values: what the values are, for data read from a user's files
        (:mod:`inference.data.files`): ``binary``, ``levels``, ``counts`` or ``real``, which
        ``likelihood=auto`` follows; None for the built-in sets, which name their likelihood.
    :ivar origin: the ``data.*`` keys a run records once the data is read, so that a
        re-evaluation finds the same data from any directory: for a user's files, the file or
        folder (absolute) and the SHA-256 of its content (``path``, ``sha256``); for another
        run's features, that run's directory (``run``, absolute).
    :ivar log_jacobian: for data standardized as it was read (``data=table``'s
        ``data.standardize``), log |det ∂x'/∂x| of the map from the data's units to the values
        the model sees, the same for every point: a log-density of x' plus it is one of x, which
        the evaluations report (log p̂, the ELBO, AIS), so that they stay in the data's units.
        0 for data left as it is.
    :ivar train_scale: for features drawn from a distribution per point (``data=encoded``: the sd
        of q(z|x)), the sd of each training point's value around ``train``, its mean: every
        epoch draws ``train + train_scale · ε`` afresh (:meth:`train_epoch`).
    :ivar simulator: for simulated data, the simulator that made it, as its own module defines
        it (the pendulum's :class:`~inference.data.pendulum.PendulumSimulator`); only that use's
        evaluations look inside.

    **Sequences.** A dataset of sequences holds ``(N, T, x_dim)`` tensors: N sequences of T
    frames (:attr:`frames`), each frame an ``image_shape`` image; ``factors`` are then
    ``(N, T, F)``. A data point is a whole sequence: batches, splits and log p̂ are per sequence.
    """

    name: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    image_shape: tuple[int, ...]
    levels: int | None = None
    binarize: str = "none"
    dequantize: bool = False
    factors: dict[str, torch.Tensor] | None = None
    labels: dict[str, torch.Tensor] | None = None
    factor_names: tuple[str, ...] = ()
    extra: dict[str, dict[str, torch.Tensor]] | None = None
    labeled_per_batch: int | str = 0
    frame_interval: float | None = None
    values: str | None = None
    origin: dict[str, str] | None = None
    log_jacobian: float = 0.0
    train_scale: torch.Tensor | None = None
    simulator: object | None = None

    def __post_init__(self):
        for split, keyed in (self.extra or {}).items():
            for key, value in keyed.items():
                if value.shape[:1] != self.split(split).shape[:1]:
                    raise ValueError(f"{self.name}: batch key {key!r} of the {split} split has {value.shape[0]} points, the split {self.split(split).shape[0]}")

    @property
    def x_dim(self) -> int:
        """The dimension of one point, or of one frame of a sequence."""
        return self.train.shape[-1]

    @property
    def images(self) -> bool:
        """Whether a point (or a frame) is an image, gray or colour, which the figures draw."""
        return len(self.image_shape) in (2, 3)

    @property
    def frames(self) -> int | None:
        """T, the frames of every sequence; None for data whose points are not sequences."""
        return self.train.shape[1] if self.train.dim() == 3 else None

    def to(self, device: torch.device | str) -> "Dataset":
        extra = {split: {k: v.to(device) for k, v in keyed.items()} for split, keyed in self.extra.items()} if self.extra else None
        scale = self.train_scale.to(device) if self.train_scale is not None else None
        return replace(self, train=self.train.to(device), valid=self.valid.to(device), test=self.test.to(device), extra=extra, train_scale=scale)

    def train_epoch(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """The training data for one epoch, or its points ``index``: freshly binarized,
        dequantized or drawn (:attr:`train_scale`) where configured."""
        x = self.train if index is None else self.train[index]
        if self.train_scale is not None:
            scale = self.train_scale if index is None else self.train_scale[index]
            return x + scale * torch.randn_like(x)
        if self.binarize == "dynamic":
            return torch.bernoulli(x)
        if self.dequantize:
            return _dequantized(x, self.levels)
        return x

    def split(self, name: str) -> torch.Tensor:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected 'train', 'valid' or 'test'")
        return getattr(self, name)

    def batch_extra(self, split: str, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """The tensors of the batch keys ``keys`` for ``split``, on the data's device: what the
        programs that declare ``keys`` are called with besides x."""
        offered = dict((self.extra or {}).get(split, {}))
        if self.labels is not None and "y" not in offered:
            offered["y"] = self.labels[split].to(self.train.device, torch.long)
        missing = [key for key in keys if key not in offered]
        if missing:
            provides = ", ".join(sorted(offered)) or "x alone"
            raise ValueError(
                f"the programs take {', '.join(map(repr, missing))} per data point (batch keys), but data={self.name} does not provide "
                f"{'it' if len(missing) == 1 else 'them'}: it provides {provides}; choose a dataset that does (mask: data.num_labeled=N on a labelled "
                "dataset), or a program that takes x alone"
            )
        return {key: offered[key] for key in keys}


def _dequantized(x: torch.Tensor, levels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(k + u)/L for the levels k/(L−1) of x, with u ~ U(0, 1)."""
    k = torch.round(x * (levels - 1))
    return (k + torch.rand(x.shape, generator=generator, device=x.device)) / levels


def transformed(
    name: str,
    splits,
    image_shape,
    levels: int | None,
    binarize: str = "none",
    dequantize: bool = False,
    seed: int = 0,
    source: Path | None = None,
    **extra,
) -> Dataset:
    """Assemble a Dataset from splits scaled to [0, 1], binarized or dequantized as asked.

    The valid and test splits are transformed once, with ``seed``; a dynamic transform leaves
    ``train`` as it is, for :meth:`Dataset.train_epoch` to redraw every epoch.
    """
    if binarize not in BINARIZE_MODES:
        raise ValueError(f"{name}: binarize must be one of {BINARIZE_MODES}, got {binarize!r}")
    if binarize != "none" and dequantize:
        raise ValueError(f"{name}: binarize={binarize} and dequantize=true exclude each other; choose one")
    if (binarize != "none" or dequantize) and levels is None:
        raise ValueError(f"{name}: holds real values, which cannot be binarized or dequantized; use data.binarize=none data.dequantize=false")
    splits = [torch.as_tensor(s, dtype=torch.float32) for s in splits]
    where = f"{name} ({source})" if source else name
    for split_name, split in zip(SPLITS, splits):
        if split.shape[0] == 0 and split_name != "valid":
            raise ValueError(f"{where}: the {split_name} split is empty")
        if not torch.isfinite(split).all():
            raise ValueError(f"{where}: the {split_name} split holds NaN or infinite values")
        if levels == 2 and not ((split == 0) | (split == 1)).all():
            raise ValueError(f"{where}: the {split_name} split should be binary but holds values other than 0 and 1")
        if levels is not None and split.numel() and not (0 <= split.min() and split.max() <= 1):
            raise ValueError(f"{where}: the {split_name} split holds values outside [0, 1] (from {split.min():g} to {split.max():g})")
    generator = torch.Generator().manual_seed(seed)
    first = 1 if binarize == "dynamic" or dequantize else 0  # dynamic: train is redrawn per epoch
    for i in range(first, 3):
        if binarize != "none":
            splits[i] = torch.bernoulli(splits[i], generator=generator)
        elif dequantize:
            splits[i] = _dequantized(splits[i], levels, generator)
    if binarize != "none":
        levels = 2
    return Dataset(name, *splits, image_shape=tuple(image_shape), levels=levels, binarize=binarize, dequantize=dequantize, **extra)


def with_labels_kept(data: Dataset, num_labeled: int | None, seed: int = 0, labeled_per_batch: int | str = 0) -> Dataset:
    """The semi-supervised setting (``data.num_labeled``): the labels of ``num_labeled`` training
    points, as many of each class, chosen with ``seed``, are observed; every other point, and
    every valid and test point, is unlabelled. The dataset then provides the batch key
    ``mask`` (bool, True where the label is observed) beside ``y``. ``None`` leaves it as it is.

    ``labeled_per_batch`` (``data.labeled_per_batch``): every training batch then holds that many
    labelled points, cycling through the labelled set, beside unlabelled ones, so that 100
    labels among 50,000 points are seen in every batch rather than a few batches an epoch;
    ``"auto"``: as many as show each labelled point about once an epoch, the weight Kingma et
    al.'s objective gives the labels (1 in a batch of 500 for 100 labels among 50,000)."""
    whole = isinstance(labeled_per_batch, int) and not isinstance(labeled_per_batch, bool) and labeled_per_batch >= 0
    if not whole and labeled_per_batch != "auto":
        raise ValueError(f"data.labeled_per_batch={labeled_per_batch!r}: needs a whole number of labelled points per batch, 0 or more, or auto")
    if num_labeled is None:
        if labeled_per_batch:
            raise ValueError(f"data.labeled_per_batch={labeled_per_batch} needs labelled and unlabelled points: set data.num_labeled=N too")
        return data
    if data.labels is None:
        raise ValueError(f"data.num_labeled={num_labeled}: data={data.name} has no class labels to keep; choose a labelled dataset (digits, mnist, fashion_mnist)")
    y = data.labels["train"].cpu().numpy()
    classes, counts = np.unique(y, return_counts=True)
    if isinstance(num_labeled, bool) or not isinstance(num_labeled, int) or num_labeled <= 0 or num_labeled % len(classes):
        raise ValueError(f"data.num_labeled={num_labeled!r}: needs a positive multiple of the {len(classes)} classes of data={data.name}, as many labels of each")
    per_class = num_labeled // len(classes)
    if labeled_per_batch and num_labeled == len(y):
        raise ValueError(
            f"data.labeled_per_batch={labeled_per_batch}: data.num_labeled={num_labeled} labels every training point, leaving none unlabelled; "
            "use data.labeled_per_batch=0"
        )
    if per_class > counts.min():
        raise ValueError(
            f"data.num_labeled={num_labeled}: {per_class} labels of each class, but the training split of data={data.name} has only "
            f"{counts.min()} points of class {classes[counts.argmin()]}; at most {counts.min() * len(classes)}"
        )
    generator = np.random.default_rng(seed)
    observed = np.zeros(len(y), dtype=bool)
    for c in classes:
        observed[generator.choice(np.flatnonzero(y == c), per_class, replace=False)] = True
    device = data.train.device
    masks = {"train": torch.as_tensor(observed, device=device)}
    masks.update({split: torch.zeros(data.split(split).shape[0], dtype=torch.bool, device=device) for split in ("valid", "test")})
    extra = {split: {**(data.extra or {}).get(split, {}), "mask": mask} for split, mask in masks.items()}
    return replace(data, extra=extra, labeled_per_batch=labeled_per_batch)


def split_indices(n: int, num_valid: int, num_test: int, seed: int) -> tuple[np.ndarray, ...]:
    if num_valid < 0 or num_test <= 0 or num_valid + num_test >= n:
        raise ValueError(
            f"cannot split {n} examples into num_valid={num_valid} and num_test={num_test} "
            "with training examples left over"
        )
    order = np.random.default_rng(seed).permutation(n)
    return order[num_valid + num_test :], order[:num_valid], order[num_valid : num_valid + num_test]
