"""Datasets: each split is one flat float tensor, held whole on the training device.

A loader returns a :class:`Dataset` with ``train``, ``valid`` and ``test`` tensors of shape
``(N, x_dim)``. Gray images are scaled to [0, 1], their L levels becoming k/(L−1); then one
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

Loaders of real datasets read local files only; nothing is downloaded.
"""

import gzip
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "Dataset",
    "digits",
    "mnist",
    "fashion_mnist",
    "binarized_mnist",
    "frey_face",
    "caltech_silhouettes",
    "linear_gaussian",
]

BINARIZE_MODES = ("none", "dynamic", "fixed")
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Dataset:
    """Train/valid/test splits as ``(N, x_dim)`` float tensors.

    :ivar image_shape: the shape of one example as an image, e.g. ``(28, 28)``; ``(x_dim,)``
        for data that is not an image.
    :ivar levels: how many discrete values the data takes (2 once binarized, 256 for 8-bit
        images); ``None`` for real values.
    :ivar binarize: ``"dynamic"`` when ``train`` holds pixel probabilities to be binarized
        afresh every epoch (see :meth:`train_epoch`).
    :ivar dequantize: whether ``train`` holds the levels k/(L−1) to be dequantized afresh
        every epoch, and valid and test hold dequantized values (k + u)/L.
    :ivar labels: class labels where the data has them (digits, MNIST), per split an ``(N,)``
        CPU tensor; figures colour by them.
    :ivar factors: ground-truth latent factors where the data has them, per split an
        ``(N, F)`` CPU tensor whose columns ``factor_names`` names (the pendulum's state).
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

    @property
    def x_dim(self) -> int:
        return self.train.shape[1]

    def to(self, device: torch.device | str) -> "Dataset":
        return replace(self, train=self.train.to(device), valid=self.valid.to(device), test=self.test.to(device))

    def train_epoch(self) -> torch.Tensor:
        """The training data for one epoch: freshly binarized or dequantized where configured."""
        if self.binarize == "dynamic":
            return torch.bernoulli(self.train)
        if self.dequantize:
            return _dequantized(self.train, self.levels)
        return self.train

    def split(self, name: str) -> torch.Tensor:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected 'train', 'valid' or 'test'")
        return getattr(self, name)


def _dequantized(x: torch.Tensor, levels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(k + u)/L for the levels k/(L−1) of x, with u ~ U(0, 1)."""
    k = torch.round(x * (levels - 1))
    return (k + torch.rand(x.shape, generator=generator, device=x.device)) / levels


def _transformed(
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


def _split_indices(n: int, num_valid: int, num_test: int, seed: int) -> tuple[np.ndarray, ...]:
    if num_valid < 0 or num_test <= 0 or num_valid + num_test >= n:
        raise ValueError(
            f"cannot split {n} examples into num_valid={num_valid} and num_test={num_test} "
            "with training examples left over"
        )
    order = np.random.default_rng(seed).permutation(n)
    return order[num_valid + num_test :], order[:num_valid], order[num_valid : num_valid + num_test]


def digits(binarize: str = "dynamic", dequantize: bool = False, num_valid: int = 180, num_test: int = 360, seed: int = 0) -> Dataset:
    """The 1797 handwritten 8×8 digits that ship inside scikit-learn (17 gray levels, 0..16).

    A fixed permutation (``seed``) splits them into train, valid and test. No network needed.
    """
    from sklearn.datasets import load_digits  # imported here: only this loader needs it

    bunch = load_digits()
    x = bunch.data.astype(np.float32) / 16.0  # (1797, 64) in [0, 1]
    splits = _split_indices(len(x), num_valid, num_test, seed)
    labels = {name: torch.as_tensor(bunch.target[i]) for name, i in zip(SPLITS, splits)}
    return _transformed("digits", [x[i] for i in splits], (8, 8), 17, binarize, dequantize, seed, labels=labels)


def _require_files(dataset: str, root: str | Path | None, names: list[str]) -> list[Path]:
    if root is None:
        raise ValueError(
            f"{dataset}: no data folder given; set data.root=DIR to a folder holding {', '.join(names)}"
        )
    root = Path(root)
    paths = [root / name for name in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{dataset}: missing {', '.join(missing)}. data.root={root} must hold the files "
            f"{', '.join(names)}"
        )
    return paths


def _read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file of unsigned bytes (LeCun's MNIST format)."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # not gzip, or truncated
        raise ValueError(f"{path}: cannot read as a gzip file ({e}); the file is corrupt or truncated") from e
    if len(raw) < 4:
        raise ValueError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08 or ndim not in (1, 3):
        raise ValueError(
            f"{path}: wrong IDX magic number 0x{raw[:4].hex()}; expected 0x00000801 (labels) or "
            "0x00000803 (images) of unsigned bytes"
        )
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = raw[4 + 4 * ndim :]
    if len(body) != int(np.prod(shape)):
        raise ValueError(f"{path}: the header promises shape {shape} but the file holds {len(body)} bytes of data")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


MNIST_FILES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def mnist(
    root: str | Path | None, binarize: str = "dynamic", dequantize: bool = False, num_valid: int = 10000, seed: int = 0, name: str = "mnist"
) -> Dataset:
    """MNIST (or Fashion-MNIST, same format) from the four standard IDX gz files in ``root``.

    The last ``num_valid`` training images form the validation split; the t10k files are the
    test split. ``binarize="dynamic"`` (the default) draws x ~ Bernoulli(pixel/255) every epoch.
    """
    train_images, train_labels, test_images, test_labels = (_read_idx(p) for p in _require_files(name, root, MNIST_FILES))
    for images, labels in [(train_images, train_labels), (test_images, test_labels)]:
        if len(images) != len(labels):
            raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels in {root}")
    if not 0 <= num_valid < len(train_images):
        raise ValueError(f"{name}: num_valid must lie in [0, {len(train_images)}), got {num_valid}")
    x = train_images.reshape(len(train_images), -1).astype(np.float32) / 255.0
    x_test = test_images.reshape(len(test_images), -1).astype(np.float32) / 255.0
    n_train = len(x) - num_valid
    labels = dict(zip(SPLITS, (torch.as_tensor(y.astype(np.int64)) for y in (train_labels[:n_train], train_labels[n_train:], test_labels))))
    return _transformed(name, (x[:n_train], x[n_train:], x_test), train_images.shape[1:], 256, binarize, dequantize, seed, labels=labels)


def fashion_mnist(root: str | Path | None, binarize: str = "none", dequantize: bool = False, num_valid: int = 10000, seed: int = 0) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017): the MNIST file format and sizes, 8-bit clothing images."""
    return mnist(root, binarize, dequantize, num_valid, seed, name="fashion_mnist")


BINARIZED_MNIST_FILES = [f"binarized_mnist_{split}.amat" for split in ("train", "valid", "test")]


def _read_amat(path: Path) -> np.ndarray:
    """Read a Larochelle .amat file: rows of 784 space-separated zeros and ones."""
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    digit = (raw == ord("0")) | (raw == ord("1"))
    if np.isin(raw[~digit], list(b" \t\r\n")).all():
        # Fast path, 20x quicker than np.loadtxt: every value is a lone '0' or '1'.
        rows = sum(1 for line in raw.tobytes().splitlines() if line.strip())
        x = (raw[digit] - ord("0")).astype(np.float32)
        if rows and x.size == rows * 784 and not (digit[1:] & digit[:-1]).any():
            return x.reshape(rows, 784)
    try:
        x = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{path}: not a matrix of space-separated numbers ({e})") from e
    if x.shape[1] != 784 or not np.isin(x, (0.0, 1.0)).all():
        raise ValueError(f"{path}: expected rows of 784 values in {{0, 1}}, got shape {x.shape}")
    return x


def binarized_mnist(root: str | Path | None, dequantize: bool = False, seed: int = 0) -> Dataset:
    """Statically binarized MNIST (Larochelle & Murray 2011): 50k/10k/10k rows of 784 zeros and ones."""
    train, valid, test = (_read_amat(p) for p in _require_files("binarized_mnist", root, BINARIZED_MNIST_FILES))
    return _transformed("binarized_mnist", (train, valid, test), (28, 28), 2, dequantize=dequantize, seed=seed)


def _read_mat(path: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """Read named arrays from a MATLAB file (scipy's reader: no pickle, no code runs)."""
    from scipy.io import loadmat  # imported here: only the .mat loaders need it

    try:
        contents = loadmat(path, variable_names=keys)
    except Exception as e:  # scipy raises several types for a damaged file
        raise ValueError(f"{path}: cannot read as a MATLAB .mat file ({type(e).__name__}: {e})") from e
    missing = [k for k in keys if k not in contents]
    if missing:
        raise ValueError(f"{path}: has no variable {', '.join(repr(k) for k in missing)}; expected {', '.join(keys)}")
    return contents


def frey_face(
    root: str | Path | None, binarize: str = "none", dequantize: bool = False, num_valid: int = 200, num_test: int = 200, seed: int = 0
) -> Dataset:
    """Frey Face: 1965 gray 28×20 faces from ``frey_rawface.mat`` (variable ``ff``, one face per
    column, row-major), 8-bit, scaled to [0, 1], split by a fixed permutation (``seed``)."""
    (path,) = _require_files("frey_face", root, ["frey_rawface.mat"])
    faces = _read_mat(path, ["ff"])["ff"]
    if faces.ndim != 2 or faces.shape[0] != 28 * 20:
        raise ValueError(f"{path}: 'ff' should be 560 × N (one 28×20 face per column), got {faces.shape}")
    x = faces.T.astype(np.float32) / 255.0
    train, valid, test = _split_indices(len(x), num_valid, num_test, seed)
    return _transformed("frey_face", (x[train], x[valid], x[test]), (28, 20), 256, binarize, dequantize, seed, source=path)


def caltech_silhouettes(root: str | Path | None, dequantize: bool = False, seed: int = 0) -> Dataset:
    """Caltech 101 Silhouettes 28×28 (Marlin et al. 2010), binary, with the file's own
    train/valid/test split (4100/2264/2307) from ``caltech101_silhouettes_28_split1.mat``."""
    (path,) = _require_files("caltech_silhouettes", root, ["caltech101_silhouettes_28_split1.mat"])
    keys = ["train_data", "val_data", "test_data"]
    contents = _read_mat(path, keys)
    splits = []
    for key in keys:
        x = np.asarray(contents[key], dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != 784:
            raise ValueError(f"{path}: '{key}' should hold rows of 784 pixels, got shape {x.shape}")
        # stored column-major (MATLAB): transpose each image so that it stands upright
        splits.append(x.reshape(-1, 28, 28).transpose(0, 2, 1).reshape(-1, 784))
    return _transformed("caltech_silhouettes", splits, (28, 28), 2, dequantize=dequantize, seed=seed, source=path)


def linear_gaussian(
    x_dim: int = 10,
    z_dim: int = 2,
    x_scale: float = 0.5,
    num_train: int = 2000,
    num_valid: int = 200,
    num_test: int = 500,
    seed: int = 0,
) -> Dataset:
    """Data drawn from a known linear-Gaussian model: x = W z + b + x_scale·ε, z, ε ~ N(0, I).

    W and b are drawn once from N(0, 1) with ``seed``; fit it with ``experiment=linear_gaussian``.
    """
    if min(x_dim, z_dim, num_train, num_test) <= 0 or num_valid < 0 or not x_scale > 0:
        raise ValueError("linear_gaussian: sizes and x_scale must be positive")
    g = torch.Generator().manual_seed(seed)
    W, b = torch.randn(x_dim, z_dim, generator=g), torch.randn(x_dim, generator=g)
    n = num_train + num_valid + num_test
    x = torch.randn(n, z_dim, generator=g) @ W.T + b + x_scale * torch.randn(n, x_dim, generator=g)
    train, valid, test = x.split([num_train, num_valid, num_test])
    return _transformed("linear_gaussian", (train, valid, test), (x_dim,), levels=None)
