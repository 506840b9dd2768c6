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
    assert markdown[0].startswith("| run | guide | status | test ELBO | test log p̂(x) |") and len(markdown) == 18
    assert markdown[8].startswith("paired_*: test log p̂(x) of each run minus that of the baseline 0, over the test points both evaluated")
    assert markdown[10:12] == ["The runs as hypotheses, ranked by the evidence:", ""] and markdown[-1].startswith("Each run's tightest estimate")

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


def test_one_value_typed_two_ways_is_not_a_difference_between_runs(tmp_path):
    """train.validate=False in one run and =false in the other: the same setting, so the table
    has no column for it and the two seeds are one group."""
    for name, seed, validate in (("a", 0, "False"), ("b", 1, "false")):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text(f"- train.validate={validate}\n- train.seed={seed}\n")
        test = {"elbo": -31.0, "log_px": {"mean": -30.0 + seed, "stderr": 0.2, "num_particles": 8}}
        (tmp_path / name / "metrics.json").write_text(json.dumps({"test": test, "train": {"seconds": 1.0, "steps": 10}}))
    main([str(tmp_path)])
    report = (tmp_path / "compare.md").read_text()
    assert "train.validate |" not in report and report.splitlines()[-1].startswith("| a, b | train.validate=false | 2 |")


def write_run(folder: Path, override: str, estimates: dict[str, np.ndarray], fingerprints=None) -> None:
    """A complete run with these per-point estimates of the test points (by key of per_point.npz)."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(f"- {override}\n")
    log_px = estimates["log_px"]
    test = {"elbo": float(log_px.mean()) - 1, "log_px": {"mean": float(log_px.mean()), "stderr": float(log_px.std() / math.sqrt(log_px.size)), "num_particles": 8}}
    (folder / "metrics.json").write_text(json.dumps({"test": test, "train": {"seconds": 1.0, "steps": 10}}))
    fingerprints = np.arange(log_px.size) if fingerprints is None else fingerprints
    np.savez(folder / "per_point.npz", **{"test.fingerprint": fingerprints, **{f"test.{k}": v for k, v in estimates.items()}})


def test_runs_are_ranked_as_hypotheses_by_their_tightest_estimates_with_posterior_probabilities(tmp_path):
    """Three laws on the same 200 test sequences: each is ranked by its higher estimate (SMC for
    two, importance sampling for the third), paired against the best, and given a posterior
    probability whose interval is the paired difference's normal interval pushed through the
    softmax (for two runs, σ(N d̄ ± 1.96 N se) in closed form). A run on other points is left out."""
    rng = np.random.default_rng(0)
    n = 200
    truth = rng.normal(1000.0, 50.0, n)  # most of the spread is between sequences: pairing removes it
    true_smc, spread = truth - 1 + rng.normal(0, 1, n), rng.normal(0, 0.5, n)
    laws = {
        # name: (importance sampling, SMC), per sequence
        "true": (truth - 30 + rng.normal(0, 5, n), true_smc),
        "near": (truth - 32 + rng.normal(0, 5, n), true_smc - 0.01 + spread - spread.mean()),  # 2 ± 7 nats behind in all: undecided
        "far": (truth - 3 + rng.normal(0, 1, n), truth - 40 + rng.normal(0, 5, n)),  # its IS is its tighter estimate
    }
    for name, (is_, smc) in laws.items():
        write_run(tmp_path / name, f"transition={name}", {"log_px": is_, "log_px_smc": smc})
    write_run(tmp_path / "other", "transition=other", {"log_px": truth}, fingerprints=np.arange(n) + 10_000)  # other data
    main([str(tmp_path / name) for name in laws] + ["--out", str(tmp_path / "out")])
    with (tmp_path / "out" / "compare_ranking.csv").open() as f:
        rows = {row["run"]: row for row in csv.DictReader(f)}
    assert list(rows) in (["true", "near", "far"], ["near", "true", "far"])
    assert [rows[name]["estimate"] for name in ("true", "near", "far")] == ["log_px_smc", "log_px_smc", "log_px"]
    best, other = list(rows)[:2]
    difference = laws[other][1] - laws[best][1]
    assert float(rows[other]["paired diff vs best"]) == pytest.approx(difference.mean())
    assert float(rows[other]["± stderr"]) == pytest.approx(difference.std(ddof=1) / math.sqrt(n))
    # the far law is behind by about 2 nats a sequence, 400 in all: decided
    assert rows["far"]["beyond 2 se"] == "yes" and float(rows["far"]["P 97.5%"]) < 1e-100
    # true and near: P = σ(N d̄) and the interval σ(N (d̄ ± 1.96 se)), to the draws' Monte Carlo error
    se = difference.std(ddof=1) / math.sqrt(n)
    sigmoid = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    assert float(rows[other]["P(model | test points)"]) == pytest.approx(sigmoid(n * difference.mean()), abs=1e-9)
    assert float(rows[other]["P 2.5%"]) == pytest.approx(sigmoid(n * (difference.mean() - 1.96 * se)), abs=0.01)
    assert float(rows[other]["P 97.5%"]) == pytest.approx(sigmoid(n * (difference.mean() + 1.96 * se)), abs=0.01)
    assert float(rows[other]["P 2.5%"]) < 0.1 and float(rows[other]["P 97.5%"]) > 0.5  # not decided

    main([str(tmp_path), "--out", str(tmp_path / "with_other")])
    markdown = (tmp_path / "with_other" / "compare.md").read_text()
    assert "Not ranked: the runs far, near, other, true share fewer than two test points (other data)." in markdown
    assert (tmp_path / "out" / "compare_ranking.png").is_file() and not (tmp_path / "with_other" / "compare_ranking.png").exists()
