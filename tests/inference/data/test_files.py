"""A user's own data with one override: arrays, image folders and tables, read from tiny files
of the real formats made here; what the values are, the likelihood that follows, the splits,
the labels, and each bad input refused with the file named."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, compose_config
from inference.data import arrays, images, table
from inference.data.files import values_of
from inference.runs import train
from inference.runs.build import build, instantiate
from models import Bernoulli, ContinuousBernoulli, Gaussian, Poisson

RNG = np.random.default_rng(0)


def write_images(folder: Path, classes: int = 2, per_class: int = 30, size=(10, 12)) -> Path:
    for c in range(classes):
        (folder / f"class_{c}").mkdir(parents=True)
        for i in range(per_class):  # class c a brighter block on the left or the right
            pixels = (RNG.random(size) * 60).astype(np.uint8)
            pixels[:, c * size[1] // 2:(c + 1) * size[1] // 2] += 150
            Image.fromarray(pixels).save(folder / f"class_{c}" / f"{i}.png")
    return folder


def write_colour_images(folder: Path, per_class: int = 30, size=(8, 10)) -> Path:
    for name, colour in (("blue", (20, 20, 200)), ("red", (200, 20, 20))):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = (RNG.random((*size, 3)) * 50).astype(np.uint8) + np.array(colour, np.uint8)
            Image.fromarray(pixels, "RGB").save(folder / name / f"{i}.png")
    return folder


def write_table(path: Path, rows: int = 150) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["height", "weight", "note", "species"])
        for i in range(rows):
            writer.writerow([RNG.normal(170, 10), RNG.normal(70, 5), "free text", ["ash", "oak", "elm"][i % 3]])
    return path


def test_what_the_values_are_follows_the_rules():
    assert values_of(np.array([[0, 1], [1, 0]], dtype=np.float32)) == "binary"
    assert values_of(np.array([[0, 7], [255, 3]], dtype=np.uint8)) == "levels"
    assert values_of(np.array([[0, 7], [300, 3]], dtype=np.int64)) == "counts"
    assert values_of(np.array([[0.5, 7.0]])) == "real"
    assert values_of(np.array([[-1, 2]], dtype=np.int64)) == "real"


def test_arrays_split_by_fraction_scale_levels_and_keep_labels(tmp_path):
    x, y = RNG.integers(0, 256, (200, 6, 5)).astype(np.uint8), RNG.integers(0, 4, 200)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = arrays(str(tmp_path / "d.npz"), seed=3)
    assert (data.train.shape[0], data.valid.shape[0], data.test.shape[0]) == (160, 20, 20)
    assert data.image_shape == (6, 5) and data.levels == 256 and data.values == "levels"
    assert data.train.max() <= 1 and data.train.min() >= 0
    # every point is in exactly one split, with its own label
    together = torch.cat([data.train, data.valid, data.test]) * 255
    assert sorted(map(tuple, together.round().long().tolist())) == sorted(map(tuple, x.reshape(200, -1).tolist()))
    rows = {tuple(row): label for row, label in zip(x.reshape(200, -1).tolist(), y)}
    assert all(rows[tuple(row)] == label for row, label in zip((data.test * 255).round().long().tolist(), data.labels["test"].tolist()))


def test_arrays_whose_file_fixes_the_splits_keep_them(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((30, 4)), x_valid=np.zeros((5, 4)), x_test=np.full((7, 4), 2.0))
    data = arrays(str(tmp_path / "d.npz"))
    assert (data.train.shape[0], data.valid.shape[0], data.test.shape[0]) == (30, 5, 7)
    assert data.test.eq(2).all() and data.values == "real"
    np.savez(tmp_path / "e.npz", x=np.ones((30, 2, 2)), x_test=np.zeros((7, 2, 2)))  # no validation split
    data = arrays(str(tmp_path / "e.npz"))
    assert (data.train.shape, data.valid.shape, data.test.shape) == ((30, 4), (0, 4), (7, 4))


@pytest.mark.parametrize("kind, make, overrides, likelihood", [
    ("npz of 8-bit images", lambda p: np.savez(p / "d.npz", x=RNG.integers(0, 256, (120, 8, 8)).astype(np.uint8)) or p / "d.npz", ["data=arrays"], ContinuousBernoulli),
    ("npy of counts", lambda p: np.save(p / "d.npy", RNG.poisson(2.0, (120, 12))) or p / "d.npy", ["data=arrays"], Poisson),
    ("folder of PNGs in class folders", lambda p: write_images(p / "images"), ["data=images", "encoder=conv", "decoder=conv"], ContinuousBernoulli),
    ("csv with a label column", lambda p: write_table(p / "t.csv"), ["data=table", "data.label_column=species"], Gaussian),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_three_epoch_run_on_each_kind_trains_and_evaluates(kind, make, overrides, likelihood, tmp_path):
    path = make(tmp_path)
    cfg = compose_config(*TINY, *overrides, f"data.path={path}", "train.epochs=3")
    metrics = train(cfg, tmp_path / "run")
    assert np.isfinite(metrics["test"]["log_px"]["mean"]) and metrics["train"]["epochs"] == 3
    assert metrics["test"]["log_px"]["mean"] >= metrics["test"]["elbo"] - 3 * metrics["test"]["log_px"]["stderr"]
    # likelihood=auto chose from the values, and the run's config names the choice
    assert cfg.likelihood._target_ == f"models.{likelihood.__name__}" and type(build(cfg, instantiate(cfg.data))[0].likelihood) is likelihood


def test_binary_arrays_get_the_bernoulli_and_counts_can_be_read_as_real(tmp_path):
    np.save(tmp_path / "b.npy", RNG.integers(0, 2, (50, 6)))
    cfg = compose_config(*TINY, "data=arrays", f"data.path={tmp_path / 'b.npy'}")
    data = instantiate(cfg.data)
    assert data.values == "binary" and data.levels == 2 and type(build(cfg, data)[0].likelihood) is Bernoulli
    np.save(tmp_path / "c.npy", RNG.poisson(2.0, (50, 6)))
    assert arrays(str(tmp_path / "c.npy"), values="real").values == "real"


def test_image_class_folders_give_labels_for_the_semi_supervised_model(tmp_path):
    folder = write_images(tmp_path / "images", classes=2, per_class=40)
    cfg = compose_config(*TINY, "data=images", f"data.path={folder}", "model=ss_vae", "guide=ss_vae", "objective=ss_elbo",
                         "data.num_labeled=10", "train.epochs=3", "evaluation.supervised_only_steps=50")
    metrics = train(cfg, tmp_path / "run")
    assert 0 <= metrics["test"]["accuracy"] <= 1 and "accuracy_supervised_only" in metrics["test"]


def test_images_resize_to_image_size(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, size in enumerate([(10, 12)] * 20 + [(20, 24)] * 20):
        Image.fromarray((RNG.random(size) * 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    with pytest.raises(ValueError, match=r"20.png is 24×20 pixels where 00.png is 12×10; set data.image_size=\[H,W\]"):
        images(str(folder))
    assert images(str(folder), image_size=[8, 8]).image_shape == (8, 8)


def test_colour_images_train_through_the_conv_networks_and_are_drawn_in_colour(tmp_path):
    """Colour is found (data.channels=null), held channel first as (3, H, W), trained through
    the conv networks and drawn in colour; gray files saved as RGB stay gray, and
    data.channels=1 turns colour gray."""
    folder = write_colour_images(tmp_path / "colour")
    data = images(str(folder))
    assert data.image_shape == (3, 8, 10) and data.x_dim == 240
    channel_means = [data.train[data.labels["train"] == c].reshape(-1, 3, 80).mean((0, 2)) for c in (0, 1)]  # classes: blue, red
    assert channel_means[0][2] > 0.75 > 0.25 > channel_means[0][0] and channel_means[1][0] > 0.75 > 0.25 > channel_means[1][2]
    cfg = compose_config(*TINY, "data=images", f"data.path={folder}", "encoder=conv", "decoder=conv", "train.epochs=3", "evaluation.figures=true")
    assert np.isfinite(train(cfg, tmp_path / "run")["test"]["log_px"]["mean"])
    figure = np.asarray(Image.open(tmp_path / "run" / "plots" / "reconstructions.png").convert("RGB")).astype(int)
    assert (figure[..., 0] - figure[..., 2] > 100).any() and (figure[..., 2] - figure[..., 0] > 100).any()  # red and blue inputs

    gray_as_rgb = tmp_path / "gray_rgb"
    gray_as_rgb.mkdir()
    for i in range(20):
        Image.fromarray((RNG.random((6, 7)) * 255).astype(np.uint8)).convert("RGB").save(gray_as_rgb / f"{i}.png")
    assert images(str(gray_as_rgb)).image_shape == (6, 7) and images(str(folder), channels=1).image_shape == (8, 10)
    np.savez(tmp_path / "c.npz", x=RNG.integers(0, 256, (40, 3, 5, 6)).astype(np.uint8))  # arrays: (N, 3, H, W) is colour
    assert arrays(str(tmp_path / "c.npz")).image_shape == (3, 5, 6)


def test_table_reads_numeric_columns_and_names_its_classes(tmp_path, caplog):
    data = table(str(write_table(tmp_path / "t.csv")), label_column="species")
    assert data.x_dim == 2 and data.values == "real" and "left out note, whose values are not all numbers" in caplog.text
    assert set(data.labels["train"].tolist()) == {0, 1, 2}


def test_a_standardized_table_reports_log_px_in_the_data_units(tmp_path):
    """Real columns are standardized by the training rows, and log p̂ adds the map's
    log-Jacobian: the same table with a column in centimetres rather than metres trains the same
    model on the same standardized values, and its density, by the change of variables, is
    lower by log 100 per point (log p̂ and the ELBO alike)."""
    rows = RNG.normal([1.7, 70.0], [0.1, 5.0], (150, 2))
    for name, scale in (("metres", 1.0), ("centimetres", 100.0)):
        np.savetxt(tmp_path / f"{name}.csv", rows * [scale, 1.0], delimiter=",", header="height,weight", comments="")
    data = table(str(tmp_path / "metres.csv"))
    assert data.train.mean(0).abs().max() < 1e-5 and (data.train.std(0, correction=0) - 1).abs().max() < 1e-5
    metrics = {name: train(compose_config(*TINY, "data=table", f"data.path={tmp_path / name}.csv"), tmp_path / name)["test"] for name in ("metres", "centimetres")}
    assert metrics["metres"]["log_px"]["mean"] - metrics["centimetres"]["log_px"]["mean"] == pytest.approx(np.log(100), abs=1e-3)
    assert metrics["metres"]["elbo"] - metrics["centimetres"]["elbo"] == pytest.approx(np.log(100), abs=1e-3)
    unscaled = table(str(tmp_path / "metres.csv"), standardize=False)
    every = torch.cat([unscaled.split(split) for split in ("train", "valid", "test")])  # data.standardize=false: the values as written
    assert unscaled.log_jacobian == 0 and torch.allclose(every[:, 1].sort().values, torch.as_tensor(np.sort(rows[:, 1]), dtype=torch.float32))


def test_a_parquet_table_reads_as_its_csv_does(tmp_path, monkeypatch):
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_path = write_table(tmp_path / "t.csv")
    with open(csv_path) as f:
        header, *body = [line.strip().split(",") for line in f]
    columns = {name: [row[i] for row in body] for i, name in enumerate(header)}
    pq.write_table(pa.table({**{n: [float(v) for v in columns[n]] for n in ("height", "weight")}, "note": columns["note"], "species": columns["species"]}), tmp_path / "t.parquet")
    from_csv, from_parquet = (table(str(tmp_path / f"t.{kind}"), label_column="species") for kind in ("csv", "parquet"))
    for split in ("train", "valid", "test"):
        assert torch.equal(from_csv.split(split), from_parquet.split(split)) and torch.equal(from_csv.labels[split], from_parquet.labels[split])
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as where the extra is not installed
    with pytest.raises(ValueError, match=r"t.parquet: reading .parquet needs pyarrow: pip install 'vae-suite\[parquet\]'"):
        table(str(tmp_path / "t.parquet"))


BAD = [
    ("missing path", lambda p: (arrays, {"path": str(p / "nope.npz")}), r"nope.npz does not exist; data.path is read from the directory the run starts in"),
    ("no path", lambda p: (arrays, {"path": None}), r"name it with data.path=FILE_OR_FOLDER"),
    ("1-D array", lambda p: (np.save(p / "v.npy", np.arange(10.0)), arrays, {"path": str(p / "v.npy")})[1:], r"v.npy: x has shape \(10,\); expected \(N, D\) vectors"),
    ("ragged array", lambda p: (np.save(p / "r.npy", np.array([np.zeros(3), np.zeros(4)], dtype=object)), arrays, {"path": str(p / "r.npy")})[1:],
     r"r.npy: .*ragged array cannot be read"),
    ("NaN", lambda p: (np.save(p / "n.npy", np.array([[1.0, 2.0], [np.nan, 1.0], [np.inf, 0.0]])), arrays, {"path": str(p / "n.npy")})[1:],
     r"n.npy: 2 NaN or infinite values, the first at index \(1, 0\)"),
    ("no x in the npz", lambda p: (np.savez(p / "w.npz", data=np.zeros((5, 2))), arrays, {"path": str(p / "w.npz")})[1:], r"w.npz: holds data, but no array named x"),
    ("too few points", lambda p: (np.save(p / "f.npy", np.zeros((4, 2))), arrays, {"path": str(p / "f.npy")})[1:], r"f.npy: 4 points cannot be split"),
    ("empty class folder", lambda p: ((p / "img" / "a").mkdir(parents=True), images, {"path": str(p / "img")})[1:], r"img/a: holds no PNG or JPEG images"),
    ("unreadable image", lambda p: ((p / "img").mkdir(), (p / "img" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n broken"), images, {"path": str(p / "img")})[2:],
     r"img/x.png: cannot be read as an image"),
    ("channel-last images", lambda p: (np.save(p / "hwc.npy", np.zeros((9, 5, 6, 3), np.uint8)), arrays, {"path": str(p / "hwc.npy")})[1:],
     r"hwc.npy: x has shape \(9, 5, 6, 3\), so 5 channels; .* these look channel-last: save x.transpose\(0, 3, 1, 2\)"),
    ("ragged csv row", lambda p: ((p / "r.csv").write_text("a,b\n1,2\n3\n"), table, {"path": str(p / "r.csv")})[1:],
     r"r.csv: row 3 has 1 values for the header's 2 columns"),
    ("not a number in a chosen column", lambda p: (table, {"path": str(write_table(p / "t.csv")), "columns": ["height", "note"]}),
     r"t.csv: column note holds 'free text' \(row 1\), not a number; fix it, or leave the column out with data.columns"),
    ("missing label column", lambda p: (table, {"path": str(write_table(p / "t.csv")), "label_column": "kind"}),
     r"t.csv: data.label_column='kind' is not a column; the columns are height, weight, note, species"),
]


@pytest.mark.parametrize("case, setup, message", BAD, ids=[case for case, _, _ in BAD])
def test_bad_input_is_refused_naming_the_file_and_the_fix(case, setup, message, tmp_path):
    loader, options = setup(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        loader(**options)


def test_real_values_under_a_count_likelihood_are_refused_before_training(tmp_path):
    cfg = compose_config(*TINY, "data=table", f"data.path={write_table(tmp_path / 't.csv')}", "likelihood=poisson")
    with pytest.raises(ValueError, match="Poisson likelihood needs counts, non-negative integers"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_run_records_the_data_absolute_with_its_hash_and_a_changed_file_is_refused_on_reevaluation(tmp_path, monkeypatch):
    """data.path is read from the launch directory and recorded absolute with the content's hash,
    in the run's .hydra/config.yaml and checkpoint, with the likelihood that likelihood=auto chose;
    re-evaluated from elsewhere it finds the file, a resume makes the same choice, and once the
    file changes the re-evaluation is refused, the run's files left as they were."""
    from omegaconf import OmegaConf

    from inference.runs import reevaluate

    monkeypatch.chdir(tmp_path)
    np.savez("d.npz", x=RNG.integers(0, 256, (60, 4, 4)).astype(np.uint8))
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    cfg = compose_config(*TINY, "data=arrays", "data.path=d.npz")
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # as Hydra writes it before the run
    train(cfg, run_dir)
    recorded = OmegaConf.load(run_dir / ".hydra" / "config.yaml").data
    assert recorded.path == str(tmp_path / "d.npz") and len(recorded.sha256) == 64
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["config"]["data"]["sha256"] == recorded.sha256
    chosen = compose_config(*TINY, "likelihood=continuous_bernoulli").likelihood  # 8-bit levels
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").likelihood == chosen
    resumed = train(compose_config(*TINY, "data=arrays", "data.path=d.npz", "train.resume=true", "train.epochs=3", "evaluation.num_particles=4"), run_dir)
    assert resumed["train"]["epochs"] == 3

    monkeypatch.chdir(run_dir)  # another directory
    assert np.isfinite(reevaluate(run_dir, ["evaluation.num_particles=4"])["test"]["log_px"]["mean"])
    np.savez(tmp_path / "d.npz", x=RNG.integers(0, 256, (60, 4, 4)).astype(np.uint8))  # the data changes
    metrics = (run_dir / "metrics.json").read_text()
    with pytest.raises(ValueError, match=r"d.npz changed since the run recorded it \(sha256 .*\): the run's numbers are of the data as it was"):
        reevaluate(run_dir, ["evaluation.num_particles=4"])
    assert (run_dir / "metrics.json").read_text() == metrics
    monkeypatch.chdir(tmp_path)  # and a resume, from where the run started, compares the hash with the checkpoint's
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in data.sha256: "):
        train(compose_config(*TINY, "data=arrays", "data.path=d.npz", "train.resume=true"), run_dir)
