"""Loading MNIST from a user's .npz (``data=arrays``) against the MNIST IDX loader (``data=mnist``).

    python -m bench.data_loading [--data $VAE_DATA] [--repeats 5]

The same 70,000 28×28 8-bit images and labels in the same splits (the last 10,000 training
images for validation, the t10k images for the test), no binarization, to tensors of a
Dataset: ``inference.data.mnist`` reading the four IDX gz files, ``inference.data.arrays``
reading a .npz written from them (``x``, ``x_valid``, ``x_test`` and their labels), and the
hand-written minimum, ``numpy.load`` of the same file and ``torch.as_tensor`` of its arrays
scaled to [0, 1].
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from inference.data import arrays, mnist
from inference.data.loaders import _read_idx

from .common import interleaved, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("VAE_DATA", "data")), help="the folder holding mnist/ (default $VAE_DATA)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = args.data / "mnist"
    x, y = _read_idx(root / "train-images-idx3-ubyte.gz"), _read_idx(root / "train-labels-idx1-ubyte.gz")
    x_test, y_test = _read_idx(root / "t10k-images-idx3-ubyte.gz"), _read_idx(root / "t10k-labels-idx1-ubyte.gz")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mnist.npz"
        np.savez(path, x=x[:50000], y=y[:50000], x_valid=x[50000:], y_valid=y[50000:], x_test=x_test, y_test=y_test)

        def handwritten():
            stored = np.load(path)
            return [torch.as_tensor(stored[k].reshape(len(stored[k]), -1), dtype=torch.float32) / 255 for k in ("x", "x_valid", "x_test")]

        loaders = {
            "idx (data=mnist)": lambda: mnist(root, binarize="none"),
            "npz (data=arrays)": lambda: arrays(str(path)),
            "np.load + torch": handwritten,
        }
        same = [torch.equal(a.split(s), b.split(s)) for a, b in [(loaders["idx (data=mnist)"](), loaders["npz (data=arrays)"]())] for s in ("train", "valid", "test")]
        assert all(same), "the two loaders should give the same splits"
        times = interleaved(loaders, args.repeats)
    print(f"70,000 MNIST images to a Dataset, median of {args.repeats} interleaved repeats, {machine()}")
    for name, seconds in times.items():
        print(f"  {name:18s} {seconds:6.3f} s")
    print(f"  npz / idx: {times['npz (data=arrays)'] / times['idx (data=mnist)']:.2f}   npz / hand-written: {times['npz (data=arrays)'] / times['np.load + torch']:.2f}")


if __name__ == "__main__":
    main()
