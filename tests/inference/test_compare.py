"""compare on a real two-run sweep: the table's columns and values come from each metrics.json."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL_NETS, TINY, run_command
from inference.compare import main
from inference.train import main as train_main


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    # guide=local fails: it needs training data that stays fixed, and the digits are redrawn
    code, printed = run_command(train_main, "--multirun", *TINY, *SMALL_NETS, "guide=normal,full_rank,local", f"hydra.sweep.dir={out}")
    assert code == 1 and "must stay fixed" in printed, printed
    return out


def test_compare_writes_the_table_and_figures(sweep, capsys):
    (sweep / "7" / ".hydra").mkdir(parents=True)  # a job that never got to write its metrics
    (sweep / "7" / ".hydra" / "overrides.yaml").write_text("- guide=iaf\n")
    (sweep / "8" / ".hydra").mkdir(parents=True)  # a job whose metrics.json is damaged
    (sweep / "8" / ".hydra" / "overrides.yaml").write_text("- guide=spline\n")
    (sweep / "8" / "metrics.json").write_text('{"train": ')
    main([str(sweep)])
    printed = capsys.readouterr().out
    assert (
        "3 of 5 runs not complete: 2 (failed (ValueError: guide=local keeps parameters for each training point"
        in printed
    )
    assert "7 (incomplete), 8 (failed (unreadable metrics.json" in printed

    with (sweep / "compare.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["0", "1", "2", "7", "8"]
    assert [r["guide"] for r in rows] == ["normal", "full_rank", "local", "iaf", "spline"]
    assert "train.epochs" not in rows[0]  # the same in every run: not a column
    for row, job in zip(rows[:2], ("0", "1")):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert row["status"] == "complete"
        assert float(row["test log p̂(x)"]) == pytest.approx(metrics["test"]["log_px"]["mean"])
        assert float(row["± stderr"]) == pytest.approx(metrics["test"]["log_px"]["stderr"])
        assert float(row["test ELBO"]) == pytest.approx(metrics["test"]["elbo"])
        assert int(row["steps"]) == metrics["train"]["steps"]
        assert float(row["test bits/dim"]) == pytest.approx(metrics["test"]["bits_per_dim"]) and row["bits levels"] == "2"
    assert rows[3]["status"] == "incomplete" and rows[3]["test ELBO"] == "" and rows[3]["rank"] == ""
    higher = 0 if float(rows[0]["test log p̂(x)"]) > float(rows[1]["test log p̂(x)"]) else 1
    assert (rows[higher]["rank"], rows[1 - higher]["rank"]) == ("1", "2")  # ranked by test log p̂(x), the best first
    markdown = (sweep / "compare.md").read_text().splitlines()
    assert markdown[0].startswith("| run | guide | status | test ELBO | test log p̂(x) |") and len(markdown) == 9
    assert markdown[-1].startswith("paired_*: test log p̂(x) of each run minus that of the baseline 0, over the test points both evaluated")

    # paired against the first run, by hand from the runs' per-point files: a run against itself
    # is exactly 0 ± 0; the other gets the standard deviation of the differences over √n
    base, other = (np.load(sweep / job / "per_point.npz") for job in ("0", "1"))
    assert np.array_equal(base["test.fingerprint"], other["test.fingerprint"])  # the same 32 test points
    differences = other["test.log_px"].astype(np.float64) - base["test.log_px"]
    assert (float(rows[0]["paired_diff"]), float(rows[0]["paired_stderr"]), rows[0]["paired_n"]) == (0.0, 0.0, "32")
    assert float(rows[1]["paired_diff"]) == pytest.approx(differences.mean())
    assert float(rows[1]["paired_stderr"]) == pytest.approx(differences.std(ddof=1) / math.sqrt(32))
    assert rows[1]["paired_beyond_2se"] == ("yes" if abs(differences.mean()) > 2 * differences.std(ddof=1) / math.sqrt(32) else "no")

    main([str(sweep), "--baseline", str(sweep / "1"), "--out", str(sweep / "against_1")])
    with (sweep / "against_1" / "compare.csv").open() as f:
        against_1 = list(csv.DictReader(f))
    assert float(against_1[1]["paired_diff"]) == 0.0 and float(against_1[0]["paired_diff"]) == pytest.approx(-differences.mean())
    with pytest.raises(SystemExit):
        main([str(sweep), "--baseline", str(sweep / "7")])  # an incomplete run is no baseline
    for figure in ("compare_bars.png", "compare_curves.png"):
        assert (sweep / figure).stat().st_size > 10_000


def test_runs_are_named_by_their_place_below_the_folders_compared(sweep, tmp_path):
    """Two runs given one by one are named by their directories ("0", "1"), not "." nor full paths."""
    main([str(sweep / "0"), str(sweep / "1"), "--out", str(tmp_path)])
    with (tmp_path / "compare.csv").open() as f:
        assert [row["run"] for row in csv.DictReader(f)] == ["0", "1"]
    main([str(sweep / "1"), "--out", str(tmp_path / "one")])
    with (tmp_path / "one" / "compare.csv").open() as f:
        assert [row["run"] for row in csv.DictReader(f)] == ["1"]


def test_compare_of_a_folder_without_runs_says_so(tmp_path):
    with pytest.raises(SystemExit) as exit:
        main([str(tmp_path)])
    assert exit.value.code == 2


def test_bits_of_data_of_different_levels_are_not_ranked(tmp_path):
    """A run on binarized digits and one on their 17 gray levels: compare says under its table
    that their bits per dimension do not compare; runs of the same levels get no such note."""
    for name, levels, bits in (("binary", 2, 0.51), ("gray", 17, 1.9), ("binary_again", 2, 0.49)):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text(f"- data.binarize={name}\n")
        test = {"elbo": -30.0, "log_px": {"mean": -29.0, "stderr": 0.2, "num_particles": 8}, "bits_per_dim": bits, "bits_levels": levels}
        (tmp_path / name / "metrics.json").write_text(json.dumps({"test": test, "train": {"seconds": 1.0, "steps": 10}}))
    main([str(tmp_path)])
    note = (tmp_path / "compare.md").read_text().splitlines()[-2]
    assert "Not paired (no per_point.npz, or no test points in common: other data): binary, binary_again, gray." in (tmp_path / "compare.md").read_text()
    assert note == (
        "Bits per dimension are not comparable across these runs, which measure data of different numbers of levels "
        "(2 levels: binary, binary_again; 17 levels: gray); compare bits only within a group."
    )
    main([str(tmp_path / "binary"), str(tmp_path / "binary_again"), "--out", str(tmp_path / "same")])
    assert "not comparable" not in (tmp_path / "same" / "compare.md").read_text()


def test_runs_on_latent_features_are_flagged(tmp_path):
    """A run on another run's features (data=encoded) beside one on the data: compare says
    under its table that the first's log p̂ is of the features; runs on the data get no note."""
    for name, data in (("images", {"_target_": "inference.data.digits"}), ("features", {"_target_": "inference.runs.encoded.encoded", "run": "runs/m1"})):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text(f"- data={'digits' if name == 'images' else 'encoded'}\n")
        (tmp_path / name / ".hydra" / "config.yaml").write_text(json.dumps({"data": data}))  # YAML reads JSON
        test = {"elbo": -30.0, "log_px": {"mean": -29.0, "stderr": 0.2, "num_particles": 8}}
        (tmp_path / name / "metrics.json").write_text(json.dumps({"test": test, "train": {"seconds": 1.0, "steps": 10}}))
    main([str(tmp_path)])
    assert (
        "Runs on latent features (data=encoded): features (the features of runs/m1). Their log p̂(x) is a density of those features, not of the data"
        in (tmp_path / "compare.md").read_text()
    )
    main([str(tmp_path / "images"), "--out", str(tmp_path / "alone")])
    assert "latent features" not in (tmp_path / "alone" / "compare.md").read_text()


def test_runs_that_differ_only_in_their_seed_are_summarized_across_seeds(tmp_path):
    runs = {"a": ("normal", 0, -30.0, 0.2), "b": ("normal", 1, -29.0, 0.3), "c": ("iaf", 0, -28.0, 0.2)}
    for name, (guide, seed, log_px, stderr) in runs.items():
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text(f"- guide={guide}\n- train.seed={seed}\n")
        test = {"elbo": log_px - 1, "log_px": {"mean": log_px, "stderr": stderr, "num_particles": 8}}
        (tmp_path / name / "metrics.json").write_text(json.dumps({"test": test, "train": {"seconds": 1.0, "steps": 10}}))
    main([str(tmp_path)])
    # two seeds of guide=normal: mean −29.5, standard error across seeds |−30 − (−29)|/2 = 0.5, within a run 0.25
    assert (tmp_path / "compare.md").read_text().splitlines()[-1] == "| a, b | guide=normal | 2 | -29.500 | 0.500 | 0.250 |"
    with (tmp_path / "compare_seeds.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert (row["runs"], row["seeds"], float(row["stderr across seeds"])) == ("a, b", "2", 0.5)
