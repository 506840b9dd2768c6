"""A user's own data, named by one key, ``data.path``: arrays (``data=arrays``), a folder of
images (``data=images``) or a table (``data=table``).

Each loader reads the file or folder (a relative path from the directory the run starts in),
finds what its values are (:func:`values_of`: binary, levels, counts or real, or as
``data.values`` says), splits it into train, valid and test (as the file fixes them, or
``num_valid`` and ``num_test`` points, or ``valid_fraction`` and ``test_fraction`` of them, drawn
with ``seed``) and returns a :class:`~inference.data.dataset.Dataset` whose ``values`` the
default likelihood (``likelihood=auto``, :func:`models.likelihoods.auto`) follows. What cannot
be read is refused before training, naming the file and the fix.
"""

import logging
from pathlib import Path

import numpy as np
import torch

from .dataset import SPLITS, Dataset, transformed, with_labels_kept

__all__ = ["VALUES", "arrays", "content_digest", "images", "table", "values_of"]

VALUES = ("binary", "levels", "counts", "real")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

log = logging.getLogger(__name__)


def values_of(x: np.ndarray) -> str:
    """What the values are: exactly {0, 1} → ``binary``; ``uint8`` → ``levels`` (256 of them);
    non-negative integers (an integer dtype, or floats that are all whole) → ``counts``;
    anything else → ``real``."""
    if np.issubdtype(x.dtype, np.integer):  # min and max say it all, without a pass per value test
        low, high = (x.min(), x.max()) if x.size else (0, 0)
        return "binary" if low >= 0 and high <= 1 else "levels" if x.dtype == np.uint8 else "counts" if low >= 0 else "real"
    return "binary" if x.size and ((x == 0) | (x == 1)).all() else "real"


def content_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (their relative paths and bytes, in
    sorted order): what a run records of its data, so that a changed file is noticed."""
    import hashlib

    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def resolved(path: str | Path | None, kind: str, sha256: str | None = None) -> tuple[Path, str]:
    """``data.path`` as an absolute path, from the directory the run starts in, and the SHA-256
    of its content; refused when absent, or when its content no longer has the ``sha256`` the
    run recorded."""
    if path is None or str(path) in ("", "???"):
        raise ValueError(f"data={kind} reads your own data: name it with data.path=FILE_OR_FOLDER")
    absolute = Path(path).expanduser().resolve()
    if not absolute.exists():
        raise FileNotFoundError(f"data.path={path}: {absolute} does not exist; data.path is read from the directory the run starts in")
    digest = content_digest(absolute)
    if sha256 is not None and digest != sha256:
        raise ValueError(
            f"{absolute} changed since the run recorded it (sha256 {sha256[:12]}…, now {digest[:12]}…): the run's numbers are of the data "
            "as it was; restore it, or train a new run on the data as it is"
        )
    return absolute, digest


def _check_finite(x: np.ndarray, source: Path) -> None:
    bad = ~np.isfinite(x) if np.issubdtype(x.dtype, np.floating) else np.zeros(x.shape, bool)
    if bad.any():
        first = np.unravel_index(np.flatnonzero(bad)[0], x.shape)
        raise ValueError(f"{source}: {int(bad.sum())} NaN or infinite values, the first at index {tuple(int(i) for i in first)}; clean them before training")


def _split_order(n: int, num_valid, num_test, valid_fraction: float, test_fraction: float, seed: int, source: Path) -> tuple[np.ndarray, ...]:
    """Indices of train, valid and test: ``num_valid``/``num_test`` points where given, else the fractions."""
    for name, fraction in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0 <= fraction < 1:
            raise ValueError(f"data.{name}={fraction}: expected a fraction in [0, 1)")
    valid = int(num_valid) if num_valid is not None else int(round(valid_fraction * n))
    test = int(num_test) if num_test is not None else int(round(test_fraction * n))
    if test < 1 or valid < 0 or valid + test >= n:
        raise ValueError(
            f"{source}: {n} points cannot be split into {valid} for validation and {test} for the test with training points left; "
            "bring more points, or set data.num_valid and data.num_test (or data.valid_fraction and data.test_fraction) smaller"
        )
    order = np.random.default_rng(seed).permutation(n)
    return order[valid + test:], order[:valid], order[valid:valid + test]


def _assembled(
    name: str, source: Path, digest: str, splits: list[np.ndarray], labels: list[np.ndarray] | None, values: str | None, image_shape: tuple[int, ...],
    binarize: str, dequantize: bool, seed: int, num_labeled, labeled_per_batch: int | str, standardize: bool = False,
) -> Dataset:
    """The splits as a Dataset: their values found (or as ``values`` says) and scaled as the kind
    wants; real values ``standardize``d by the training split's mean and sd."""
    kinds = {values_of(s) for s in splits if s.size}
    found = kinds.pop() if len(kinds) == 1 else "counts" if kinds <= {"binary", "counts"} else "levels" if kinds <= {"binary", "levels"} else "real"
    values = values or found
    if values not in VALUES:
        raise ValueError(f"data.values={values!r}: expected one of {', '.join(VALUES)} (or null: found from the data, here {found})")
    if values == "levels":
        if found not in ("levels", "binary"):
            raise ValueError(f"{source}: data.values=levels reads 8-bit values 0..255, but the data is {found}; set data.values={found}")
        splits, levels = [np.divide(s, np.float32(255), dtype=np.float32) for s in splits], 256
    elif values == "binary":
        if found != "binary":
            raise ValueError(f"{source}: data.values=binary needs values in {{0, 1}}, but the data is {found}; set data.values={found}")
        levels = 2
    elif values == "counts":
        whole = all((s >= 0).all() and (s == np.round(s)).all() for s in splits)
        if not whole:
            raise ValueError(f"{source}: data.values=counts needs non-negative integers, but the data holds other values; set data.values=real")
        levels = None
    else:
        levels = None
    label_tensors = {split: torch.as_tensor(y, dtype=torch.long) for split, y in zip(SPLITS, labels)} if labels is not None else None
    flat = [s.astype(np.float32, copy=False).reshape(s.shape[0], int(np.prod(s.shape[1:]))) for s in splits]  # an empty split keeps its width
    log_jacobian = 0.0
    if standardize and values == "real":
        mean, sd = flat[0].mean(0, dtype=np.float64), flat[0].std(0, dtype=np.float64)
        sd[sd == 0] = 1.0  # a constant column stays as it is (shifted to 0)
        flat = [((s - mean) / sd).astype(np.float32) for s in flat]
        log_jacobian = float(-np.log(sd).sum())  # log |d x_standardized / d x| per point
    data = transformed(name, flat, image_shape, levels, binarize, dequantize, seed,
                       source=source, labels=label_tensors, values=values, origin={"path": str(source), "sha256": digest}, log_jacobian=log_jacobian)
    return with_labels_kept(data, num_labeled, seed, labeled_per_batch)


def _as_points(x: np.ndarray, source: Path, key: str = "x") -> tuple[np.ndarray, tuple[int, ...]]:
    """(N, D) vectors, (N, H, W) or (N, C, H, W) images (C = 1 or 3): the array and one point's
    image shape, (H, W) for gray images, (3, H, W) for colour ones."""
    if x.dtype == object:
        raise ValueError(f"{source}: {key} is a ragged array (points of different sizes); every point must have the same shape")
    if x.ndim < 2 or x.ndim > 4:
        raise ValueError(f"{source}: {key} has shape {x.shape}; expected (N, D) vectors, (N, H, W) or (N, C, H, W) images, one point per row")
    if x.ndim == 4 and x.shape[1] not in (1, 3):
        last = x.shape[-1] in (1, 3)
        raise ValueError(
            f"{source}: {key} has shape {x.shape}, so {x.shape[1]} channels; images are (N, C, H, W) with C = 1 (gray) or 3 (colour)"
            + ("; these look channel-last: save x.transpose(0, 3, 1, 2)" if last else "")
        )
    image_shape = (x.shape[1], *x.shape[-2:]) if x.ndim == 4 and x.shape[1] == 3 else tuple(x.shape[-2:]) if x.ndim >= 3 else (x.shape[1],)
    _check_finite(x, source)
    return x.reshape(len(x), *image_shape), image_shape


def arrays(
    path: str, values: str | None = None, num_valid: int | None = None, num_test: int | None = None, valid_fraction: float = 0.1,
    test_fraction: float = 0.1, binarize: str = "none", dequantize: bool = False, seed: int = 0, num_labeled: int | None = None,
    labeled_per_batch: int | str = 0, sha256: str | None = None,
) -> Dataset:
    """``data=arrays``: a ``.npz`` with the array ``x`` (and optionally ``y``, the class labels;
    ``x_valid``, ``x_test``, ``y_valid``, ``y_test`` fix the splits) or a ``.npy`` holding x alone.

    :param path: the file (``data.path``).
    :param values: ``binary``, ``levels``, ``counts`` or ``real``; None: found from the data.
    :param sha256: the content's hash the run recorded (``data.sha256``); a file that no longer has it is refused.
    """
    source, digest = resolved(path, "arrays", sha256)
    if source.suffix not in (".npz", ".npy"):
        raise ValueError(f"data.path={path}: data=arrays reads a .npz or a .npy file; for images use data=images, for a .csv data=table")
    try:
        stored = dict(np.load(source, allow_pickle=False)) if source.suffix == ".npz" else {"x": np.load(source, allow_pickle=False)}
    except ValueError as e:
        raise ValueError(f"{source}: {e}; save every point with the same shape (a ragged array cannot be read)") from e
    except (OSError, EOFError) as e:
        raise ValueError(f"{source}: cannot be read as {source.suffix} ({e}); the file is corrupt or truncated") from e
    if "x" not in stored:
        raise ValueError(f"{source}: holds {', '.join(sorted(stored)) or 'no arrays'}, but no array named x; save the data as x (np.savez(file, x=..., y=...))")
    x, image_shape = _as_points(stored["x"], source)
    y = stored.get("y")
    if y is not None and len(y) != len(x):
        raise ValueError(f"{source}: y has {len(y)} labels for {len(x)} points in x")
    if "x_test" in stored:  # the file fixes the splits
        splits = [x, *(_as_points(stored[k], source, k)[0] if k in stored else x[:0] for k in ("x_valid", "x_test"))]
        labels = [y, stored.get("y_valid", np.zeros(len(splits[1]), int)), stored.get("y_test")] if y is not None else None
        if labels is not None and labels[2] is None:
            raise ValueError(f"{source}: holds y but no y_test for x_test; save the test labels as y_test")
    else:
        order = _split_order(len(x), num_valid, num_test, valid_fraction, test_fraction, seed, source)
        splits = [x[i] for i in order]
        labels = [y[i] for i in order] if y is not None else None
    return _assembled("arrays", source, digest, splits, labels, values, image_shape, binarize, dequantize, seed, num_labeled, labeled_per_batch)


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # Pillow's modes of one channel (LA: with transparency)


def _pixels(file: Path, channels: int | None, target: tuple[int, int] | None) -> np.ndarray:
    """One image as 8-bit (H, W) gray or (H, W, 3) colour, resized to ``target`` (H, W): as
    ``channels`` says, or (None) gray where the image is, equal colour channels included."""
    from PIL import Image

    with Image.open(file) as image:
        gray = channels == 1 or (channels is None and image.mode in GRAY_MODES)
        converted = image.convert("L" if gray else "RGB")
        if target is not None and converted.size != (target[1], target[0]):
            converted = converted.resize((target[1], target[0]), Image.Resampling.BILINEAR)
        array = np.asarray(converted, dtype=np.uint8)
    if channels is None and array.ndim == 3 and (array == array[..., :1]).all():
        return array[..., 0]
    return array


def images(
    path: str, image_size: list[int] | None = None, channels: int | None = None, values: str | None = None, num_valid: int | None = None,
    num_test: int | None = None, valid_fraction: float = 0.1, test_fraction: float = 0.1, binarize: str = "none", dequantize: bool = False,
    seed: int = 0, num_labeled: int | None = None, labeled_per_batch: int | str = 0, sha256: str | None = None,
) -> Dataset:
    """``data=images``: a folder of PNG or JPEG images, or of class subfolders whose sorted
    names give the labels ``y``, read as 8-bit gray or colour (256 levels, scaled to [0, 1]).

    :param path: the folder (``data.path``).
    :param image_size: ``[H, W]`` to resize every image to; None: every image must have the size of the first.
    :param channels: 1 (gray), 3 (colour, the images then ``(3, H, W)``); None: 1 where every
        image is gray (a colour file whose channels are all equal counts as gray), else 3.
    :param sha256: the folder's hash the run recorded (``data.sha256``).
    """
    from PIL import UnidentifiedImageError  # imported here: only this loader needs Pillow

    source, digest = resolved(path, "images", sha256)
    if not source.is_dir():
        raise ValueError(f"data.path={path}: data=images reads a folder of images (or of class folders); for arrays in a file use data=arrays")
    if channels not in (None, 1, 3):
        raise ValueError(f"data.channels={channels}: expected 1 (gray), 3 (colour) or null (found from the images)")
    folders = sorted(p for p in source.iterdir() if p.is_dir())
    classes = folders if folders else [source]
    files, y = [], []
    for label, folder in enumerate(classes):
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ValueError(f"{folder}: holds no PNG or JPEG images; every class folder needs images (or remove the folder)")
        files += found
        y += [label] * len(found)
    target = tuple(image_size) if image_size is not None else None
    size, pixels = target, []
    for file in files:
        try:
            array = _pixels(file, channels, target)
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{file}: cannot be read as an image ({e}); the file is corrupt or truncated: replace or remove it") from e
        if size is None:
            size = array.shape[:2]
        elif array.shape[:2] != tuple(size):
            raise ValueError(f"{file} is {array.shape[1]}×{array.shape[0]} pixels where {files[0].name} is {size[1]}×{size[0]}; set data.image_size=[H,W] to resize every image")
        pixels.append(array)
    if channels == 3 or any(a.ndim == 3 for a in pixels):  # colour, channel first; gray images among them repeat their one channel
        x, image_shape = np.stack([a if a.ndim == 3 else np.repeat(a[..., None], 3, -1) for a in pixels]).transpose(0, 3, 1, 2), (3, *size)
    else:
        x, image_shape = np.stack(pixels), tuple(size)
    labels = np.asarray(y) if folders else None
    order = _split_order(len(x), num_valid, num_test, valid_fraction, test_fraction, seed, source)
    splits = [x[i] for i in order]
    split_labels = [labels[i] for i in order] if labels is not None else None
    return _assembled("images", source, digest, splits, split_labels, values or "levels", image_shape, binarize, dequantize, seed, num_labeled, labeled_per_batch)


def _csv_columns(source: Path) -> dict[str, np.ndarray]:
    """A ``.csv``'s columns by their header's names: floats where every value is a number, else strings."""
    import csv

    with open(source, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ValueError(f"{source}: needs a header row and at least one row of values")
    header, body = rows[0], rows[1:]
    short = next((i for i, row in enumerate(body) if len(row) != len(header)), None)
    if short is not None:
        raise ValueError(f"{source}: row {short + 2} has {len(body[short])} values for the header's {len(header)} columns; every row needs one per column")
    columns = {}
    for i, name in enumerate(header):
        values = np.array([row[i] for row in body])
        try:
            columns[name] = values.astype(np.float64)
        except ValueError:
            columns[name] = values
    return columns


def _parquet_columns(source: Path) -> dict[str, np.ndarray]:
    """A ``.parquet``'s columns by name (read with pyarrow, the ``parquet`` extra): numbers as
    floats (a missing one as NaN), anything else as strings."""
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ValueError(f"{source}: reading .parquet needs pyarrow: pip install 'vae-suite[parquet]' (or save the table as .csv)") from e
    import pyarrow as pa

    try:
        stored = pq.read_table(source)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{source}: cannot be read as .parquet ({e}); the file is corrupt or truncated") from e
    numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean)
    return {
        name: column.cast(pa.float64()).to_numpy(zero_copy_only=False) if any(kind(column.type) for kind in numeric) else np.array(column.to_pylist(), dtype=str)
        for name, column in zip(stored.column_names, stored.columns)
    }


def table(
    path: str, columns: list[str] | None = None, label_column: str | None = None, values: str | None = None, standardize: bool = True,
    num_valid: int | None = None, num_test: int | None = None, valid_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
    num_labeled: int | None = None, labeled_per_batch: int | str = 0, sha256: str | None = None,
) -> Dataset:
    """``data=table``: a ``.csv`` with a header row, or a ``.parquet`` (with pyarrow); each row a
    point, ``columns`` its values (default: every numeric column but the label),
    ``label_column`` its class (its distinct values, sorted, become the classes of ``y``).

    :param path: the file (``data.path``).
    :param standardize: real values are shifted and scaled to mean 0 and sd 1 per column (by the
        training split's mean and sd); log p̂ then adds the map's log-Jacobian, −Σ log sd, so
        that it stays a density of the data in its own units. Counts and binary values are
        left as they are.
    :param sha256: the content's hash the run recorded (``data.sha256``).
    """
    source, digest = resolved(path, "table", sha256)
    suffix = source.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"data.path={path}: data=table reads a .csv file with a header row, or a .parquet; for arrays use data=arrays")
    stored = _csv_columns(source) if suffix == ".csv" else _parquet_columns(source)
    header = list(stored)
    if label_column is not None and label_column not in stored:
        raise ValueError(f"{source}: data.label_column={label_column!r} is not a column; the columns are {', '.join(header)}")
    numeric = [name for name in header if stored[name].dtype.kind == "f"]
    chosen = list(columns) if columns is not None else [name for name in numeric if name != label_column]
    unknown = [name for name in chosen if name not in stored]
    if unknown:
        raise ValueError(f"{source}: data.columns names {', '.join(unknown)}, not in the file; the columns are {', '.join(header)}")
    if not chosen:
        raise ValueError(f"{source}: no numeric column to model; name them with data.columns=[...]")
    left_out = [name for name in header if name not in numeric and name != label_column] if columns is None else []
    if left_out:
        log.warning(f"{source}: left out {', '.join(left_out)}, whose values are not all numbers; name the columns to model with data.columns=[...]")
    for name in chosen:
        if name not in numeric:
            row, value = next((i, v) for i, v in enumerate(stored[name]) if not _is_number(v))
            raise ValueError(f"{source}: column {name} holds {str(value)!r} (row {row + 1}), not a number; fix it, or leave the column out with data.columns")
    x = np.stack([stored[name] for name in chosen], 1)
    _check_finite(x, source)
    if (x == np.round(x)).all() and (x >= 0).all():
        x = x.astype(np.int64)  # whole non-negative numbers in a table are counts (or binary)
    labels = None
    if label_column is not None:
        raw = stored[label_column]
        classes, labels = np.unique(raw, return_inverse=True)  # sorted distinct values, each row's index among them
    order = _split_order(len(x), num_valid, num_test, valid_fraction, test_fraction, seed, source)
    splits = [x[i] for i in order]
    split_labels = [labels[i] for i in order] if labels is not None else None
    return _assembled("table", source, digest, splits, split_labels, values, (x.shape[1],), "none", False, seed, num_labeled, labeled_per_batch,
                      standardize=standardize)


def _is_number(value) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
