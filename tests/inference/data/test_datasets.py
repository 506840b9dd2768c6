"""Loaders: splits, binarization, tiny files in the real formats, and the errors users meet."""

import gzip
import os
from pathlib import Path

import pytest
import torch

from conftest import write_idx
import numpy as np

from inference.data import Dataset, binarized_mnist, caltech_silhouettes, digits, frey_face, linear_gaussian, mnist
from inference.data.dataset import with_labels_kept


def test_digits_split_and_dynamic_binarization():
    data = digits()
    assert [len(s) for s in (data.train, data.valid, data.test)] == [1257, 180, 360]
    assert data.x_dim == 64 and data.image_shape == (8, 8)
    gray = data.train
    assert gray.min() >= 0 and gray.max() <= 1 and ((gray > 0) & (gray < 1)).any()  # kept gray
    for split in (data.valid, data.test):
        assert ((split == 0) | (split == 1)).all()  # binarized once
    first, second = data.train_epoch(), data.train_epoch()
    assert ((first == 0) | (first == 1)).all() and not torch.equal(first, second)  # fresh each epoch
    # x ~ Bernoulli(pixel): over many epochs the mean approaches the gray value
    mean = torch.stack([data.train_epoch() for _ in range(200)]).mean(0)
    assert (mean - gray).abs().max() < 5 * 0.5 / 200**0.5


def test_fixed_seed_gives_the_same_test_set():
    assert torch.equal(digits().test, digits().test)
    assert not torch.equal(digits(seed=0).test, digits(seed=1).test)


def test_mnist_reads_idx_files(mnist_root):
    data = mnist(mnist_root, num_valid=10)
    assert [len(s) for s in (data.train, data.valid, data.test)] == [30, 10, 10]
    assert data.x_dim == 784 and data.image_shape == (28, 28)
    assert ((data.test == 0) | (data.test == 1)).all()
    gray = mnist(mnist_root, binarize="none", num_valid=10)
    raw = gzip.open(mnist_root / "t10k-images-idx3-ubyte.gz").read()[16:]
    assert torch.allclose(gray.test.flatten(), torch.tensor(list(raw), dtype=torch.float32) / 255)


def test_mnist_missing_file_names_the_path_and_the_expected_files(mnist_root):
    (mnist_root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as error:
        mnist(mnist_root)
    message = str(error.value)
    assert str(mnist_root / "t10k-labels-idx1-ubyte.gz") in message
    assert "train-images-idx3-ubyte.gz" in message  # what the folder must hold


def test_mnist_without_root_says_to_set_it():
    with pytest.raises(ValueError, match="set data.root=DIR"):
        mnist(None)


def test_corrupt_idx_files_are_named(mnist_root):
    path = mnist_root / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x09\x03" + b"\x00" * 12)
    with pytest.raises(ValueError, match=f"{path}: wrong IDX magic number 0x00000903"):
        mnist(mnist_root)
    path.write_bytes(gzip.compress(b"\x00" * 1000)[:20])
    with pytest.raises(ValueError, match=f"{path}: cannot read as a gzip file"):
        mnist(mnist_root)


def test_mnist_image_and_label_counts_must_agree(mnist_root):
    write_idx(mnist_root / "train-labels-idx1-ubyte.gz", torch.zeros(39, dtype=torch.uint8).numpy())
    with pytest.raises(ValueError, match="40 images but 39 labels"):
        mnist(mnist_root, num_valid=10)


def test_binarized_mnist_reads_amat_files(binarized_mnist_root):
    data = binarized_mnist(binarized_mnist_root)
    assert [s.shape for s in (data.train, data.valid, data.test)] == [(20, 784)] * 3
    assert data.binarize == "none"


def test_binarized_mnist_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="binarized_mnist_train.amat"):
        binarized_mnist(tmp_path)


def test_linear_gaussian_data_has_the_model_covariance():
    data = linear_gaussian(x_dim=3, z_dim=1, x_scale=0.5, num_train=20000, num_valid=0, num_test=10, seed=3)
    g = torch.Generator().manual_seed(3)
    W, b = torch.randn(3, 1, generator=g), torch.randn(3, generator=g)
    cov = torch.cov(data.train.T)
    assert torch.allclose(data.train.mean(0), b, atol=0.05)
    assert torch.allclose(cov, W @ W.T + 0.25 * torch.eye(3), atol=0.1)


def test_amat_with_other_number_spellings_reads_the_same(binarized_mnist_root):
    fast = binarized_mnist(binarized_mnist_root)
    path = binarized_mnist_root / "binarized_mnist_test.amat"
    path.write_text("\n".join(" ".join(f"{v:.1f}" for v in row) for row in fast.test.tolist()) + "\n")
    assert torch.equal(binarized_mnist(binarized_mnist_root).test, fast.test)


def test_amat_with_wrong_row_length_is_named(binarized_mnist_root):
    path = binarized_mnist_root / "binarized_mnist_valid.amat"
    path.write_text("0 1 0\n1 1 0\n")
    with pytest.raises(ValueError, match=f"{path}: expected rows of 784 values"):
        binarized_mnist(binarized_mnist_root)


# The folder that holds the benchmark data sets (mnist/, binarized_mnist/, frey_face/,
# caltech101_silhouettes/), where a machine has them.
SHARED_DATA = Path(os.environ.get("VAE_DATA", "/nonexistent"))


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="set VAE_DATA to the folder of the benchmark data sets")
def test_real_mnist_files():
    """The real files: split sizes, and MNIST's well-known mean pixel intensity 0.1307."""
    data = mnist(SHARED_DATA / "mnist", binarize="none")
    assert [len(s) for s in (data.train, data.valid, data.test)] == [50000, 10000, 10000]
    assert abs(torch.cat([data.train, data.valid]).mean().item() - 0.1307) < 5e-4
    static = binarized_mnist(SHARED_DATA / "binarized_mnist")
    assert [len(s) for s in (static.train, static.valid, static.test)] == [50000, 10000, 10000]
    assert 0.12 < static.train.mean().item() < 0.145  # about as many ones as MNIST has ink
    faces = frey_face(SHARED_DATA / "frey_face")
    assert sum(len(s) for s in (faces.train, faces.valid, faces.test)) == 1965 and faces.x_dim == 560
    silhouettes = caltech_silhouettes(SHARED_DATA / "caltech101_silhouettes")
    assert [len(s) for s in (silhouettes.train, silhouettes.valid, silhouettes.test)] == [4100, 2264, 2307]


def test_frey_face_reads_the_mat_file(frey_root):
    data = frey_face(frey_root, num_valid=5, num_test=5)
    assert [len(s) for s in (data.train, data.valid, data.test)] == [20, 5, 5]
    assert data.image_shape == (28, 20) and data.levels == 256
    from scipy.io import loadmat

    faces = loadmat(frey_root / "frey_rawface.mat")["ff"].T / 255.0
    every = torch.cat([data.train, data.valid, data.test])
    assert sorted(every.sum(1).tolist()) == pytest.approx(sorted(faces.sum(1).tolist()), rel=1e-5)


def test_caltech_silhouettes_keeps_its_split(caltech_root):
    data = caltech_silhouettes(caltech_root)
    assert [len(s) for s in (data.train, data.valid, data.test)] == [20, 10, 10]
    assert data.levels == 2


def test_mat_file_without_the_expected_variable_is_named(frey_root):
    from scipy.io import savemat

    path = frey_root / "frey_rawface.mat"
    savemat(path, {"faces": np.zeros((560, 3), dtype=np.uint8)})
    with pytest.raises(ValueError, match=f"{path}: has no variable 'ff'"):
        frey_face(frey_root)


def test_corrupt_mat_file_is_named(caltech_root):
    path = caltech_root / "caltech101_silhouettes_28_split1.mat"
    path.write_bytes(b"not a MATLAB file at all" * 10)
    with pytest.raises(ValueError, match=f"{path}: cannot read as a MATLAB .mat file"):
        caltech_silhouettes(caltech_root)


def test_dequantization_follows_the_rule():
    gray = digits(binarize="none")
    data = digits(binarize="none", dequantize=True)
    levels = torch.round(gray.test * 16)  # k in 0..16
    assert ((data.test * 17 - levels) >= 0).all() and ((data.test * 17 - levels) < 1).all()  # x = (k + u)/17
    epoch = data.train_epoch()
    assert ((epoch * 17 - torch.round(gray.train * 16)) >= 0).all() and ((epoch > 0) & (epoch < 1)).all()
    assert not torch.equal(epoch, data.train_epoch())  # fresh noise every epoch


def test_bad_transforms_and_splits_are_refused():
    with pytest.raises(ValueError, match="binarize=fixed and dequantize=true exclude each other"):
        digits(binarize="fixed", dequantize=True)
    with pytest.raises(ValueError, match="binarize must be one of"):
        digits(binarize="static")
    with pytest.raises(ValueError, match="cannot split 1797 examples into num_valid=0 and num_test=0"):
        digits(num_valid=0, num_test=0)


@pytest.mark.parametrize(
    "fault, message",
    [
        ("other values", "the train split should be binary but holds values other than 0 and 1"),
        ("NaN", "the train split holds NaN or infinite values"),
        ("empty", "the test split is empty"),
    ],
)
def test_bad_contents_of_a_data_file_are_named_with_the_file(caltech_root, fault, message):
    from scipy.io import loadmat, savemat

    path = caltech_root / "caltech101_silhouettes_28_split1.mat"
    contents = {k: v for k, v in loadmat(path).items() if k.endswith("_data")}
    if fault == "other values":
        contents["train_data"][0, 5] = 3
    elif fault == "NaN":
        contents["train_data"][1, 7] = np.nan
    else:
        contents["test_data"] = np.zeros((0, 784))
    savemat(path, contents)
    with pytest.raises(ValueError, match=f"caltech_silhouettes \\({path}\\): {message}"):
        caltech_silhouettes(caltech_root)


def test_gray_values_outside_the_unit_interval_are_refused():
    from inference.data.dataset import transformed

    splits = [torch.rand(5, 4), torch.rand(3, 4), torch.rand(3, 4) * 2 + 0.5]
    with pytest.raises(ValueError, match=r"gray: the test split holds values outside \[0, 1\] \(from 0\.5"):
        transformed("gray", splits, (2, 2), 256)


def test_num_labeled_keeps_that_many_labels_as_many_of_each_class():
    data = digits(num_labeled=50, seed=3)
    y, mask = data.batch_extra("train", ("y", "mask")).values()
    assert mask.dtype == torch.bool and int(mask.sum()) == 50
    assert torch.bincount(y[mask], minlength=10).tolist() == [5] * 10
    assert torch.equal(digits(num_labeled=50, seed=3).batch_extra("train", ("mask",))["mask"], mask)  # the same for the same seed
    assert not torch.equal(digits(num_labeled=50, seed=4).batch_extra("train", ("mask",))["mask"], mask)
    for split in ("valid", "test"):  # evaluated unlabelled: log p(x) with y summed out
        assert not data.batch_extra(split, ("mask",))["mask"].any()
    assert "mask" not in (digits().extra or {}).get("train", {})  # only when asked


def test_num_labeled_on_data_without_labels_is_refused():
    unlabelled = Dataset("points", torch.rand(20, 3), torch.rand(5, 3), torch.rand(5, 3), image_shape=(3,))
    with pytest.raises(ValueError, match=r"data.num_labeled=10: data=points has no class labels to keep"):
        with_labels_kept(unlabelled, 10)


@pytest.mark.parametrize(
    "num_labeled, message",
    [
        (55, r"data.num_labeled=55: needs a positive multiple of the 10 classes of data=digits"),
        (0, r"data.num_labeled=0: needs a positive multiple"),
        (2000, r"data.num_labeled=2000: 200 labels of each class, but the training split of data=digits has only \d+ points of class \d; at most \d+"),
    ],
)
def test_a_num_labeled_that_does_not_fit_is_refused(num_labeled, message):
    with pytest.raises(ValueError, match=message):
        digits(num_labeled=num_labeled)


@pytest.mark.parametrize(
    "num_labeled, labeled_per_batch, message",
    [
        (None, 10, r"data.labeled_per_batch=10 needs labelled and unlabelled points: set data.num_labeled=N too"),
        (50, -1, r"data.labeled_per_batch=-1: needs a whole number of labelled points per batch, 0 or more"),
        (50, 2.5, r"data.labeled_per_batch=2.5: needs a whole number"),
    ],
)
def test_a_labeled_per_batch_that_does_not_fit_is_refused(num_labeled, labeled_per_batch, message):
    with pytest.raises(ValueError, match=message):
        digits(num_labeled=num_labeled, labeled_per_batch=labeled_per_batch)
