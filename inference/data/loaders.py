"""The datasets a run can name (``data=...``): each loader returns a :class:`~inference.data.dataset.Dataset`.

The digits ship inside scikit-learn and the linear-Gaussian data is drawn from a known model;
the loaders of real datasets read local files of their published formats (IDX, ``.amat``,
``.mat``) and check them, naming the file. Nothing is downloaded.
"""

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from .dataset import SPLITS, Dataset, split_indices, transformed, with_labels_kept

__all__ = [
    "digits",
    "mnist",
    "fashion_mnist",
    "binarized_mnist",
    "frey_face",
    "caltech_silhouettes",
    "linear_gaussian",
]


def digits(
    binarize: str = "dynamic", dequantize: bool = False, num_valid: int = 180, num_test: int = 360, seed: int = 0,
    num_labeled: int | None = None, labeled_per_batch: int | str = 0,
) -> Dataset:
    """The 1797 handwritten 8×8 digits that ship inside scikit-learn (17 gray levels, 0..16).

    A fixed permutation (``seed``) splits them into train, valid and test. No network needed.
    ``num_labeled``, ``labeled_per_batch``: keep the labels of that many training points only,
    and put that many of them in every batch (:func:`with_labels_kept`).
    """
    from sklearn.datasets import load_digits  # imported here: only this loader needs it

    bunch = load_digits()
    x = bunch.data.astype(np.float32) / 16.0  # (1797, 64) in [0, 1]
    splits = split_indices(len(x), num_valid, num_test, seed)
    labels = {name: torch.as_tensor(bunch.target[i]) for name, i in zip(SPLITS, splits)}
    data = transformed("digits", [x[i] for i in splits], (8, 8), 17, binarize, dequantize, seed, labels=labels)
    return with_labels_kept(data, num_labeled, seed, labeled_per_batch)


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
            f"{', '.join(names)}. Set the environment variable VAE_DATA to the folder that holds the benchmark "
            "sets, each in its own folder (data.root defaults to $VAE_DATA/<the dataset's folder>), or set data.root=DIR"
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
    root: str | Path | None,
    binarize: str = "dynamic",
    dequantize: bool = False,
    num_valid: int = 10000,
    seed: int = 0,
    name: str = "mnist",
    num_labeled: int | None = None,
    labeled_per_batch: int | str = 0,
) -> Dataset:
    """MNIST (or Fashion-MNIST, same format) from the four standard IDX gz files in ``root``.

    The last ``num_valid`` training images form the validation split; the t10k files are the
    test split. ``binarize="dynamic"`` (the default) draws x ~ Bernoulli(pixel/255) every epoch.
    ``num_labeled``, ``labeled_per_batch``: keep the labels of that many training points only,
    and put that many of them in every batch (:func:`with_labels_kept`).
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
    data = transformed(name, (x[:n_train], x[n_train:], x_test), train_images.shape[1:], 256, binarize, dequantize, seed, labels=labels)
    return with_labels_kept(data, num_labeled, seed, labeled_per_batch)


def fashion_mnist(
    root: str | Path | None, binarize: str = "none", dequantize: bool = False, num_valid: int = 10000, seed: int = 0,
    num_labeled: int | None = None, labeled_per_batch: int | str = 0,
) -> Dataset:
    """Fashion-MNIST (Xiao et al. 2017): the MNIST file format and sizes, 8-bit clothing images."""
    return mnist(root, binarize, dequantize, num_valid, seed, name="fashion_mnist", num_labeled=num_labeled, labeled_per_batch=labeled_per_batch)


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
    return transformed("binarized_mnist", (train, valid, test), (28, 28), 2, dequantize=dequantize, seed=seed)


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
    train, valid, test = split_indices(len(x), num_valid, num_test, seed)
    return transformed("frey_face", (x[train], x[valid], x[test]), (28, 20), 256, binarize, dequantize, seed, source=path)


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
    return transformed("caltech_silhouettes", splits, (28, 28), 2, dequantize=dequantize, seed=seed, source=path)


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
    return transformed("linear_gaussian", (train, valid, test), (x_dim,), levels=None)
