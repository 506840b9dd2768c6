"""compare on a real two-run sweep: the table's columns and values come from each metrics.json."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SMALL_NETS, TINY
from inference.compare import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    # guide=local fails: it needs training data that stays fixed, and the digits are redrawn
    command = [sys.executable, "-m", "inference.train", "--multirun", *TINY, *SMALL_NETS, "guide=normal,full_rank,local", f"hydra.sweep.dir={out}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "must stay fixed" in done.stderr, done.stderr
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
    assert rows[3]["status"] == "incomplete" and rows[3]["test ELBO"] == ""
    markdown = (sweep / "compare.md").read_text().splitlines()
    assert markdown[0].startswith("| run | guide | status | test ELBO | test log p̂(x) |") and len(markdown) == 7
    for figure in ("compare_bars.png", "compare_curves.png"):
        assert (sweep / figure).stat().st_size > 10_000


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
    note = (tmp_path / "compare.md").read_text().splitlines()[-1]
    assert note == (
        "Bits per dimension are not comparable across these runs, which measure data of different numbers of levels "
        "(2 levels: binary, binary_again; 17 levels: gray); compare bits only within a group."
    )
    main([str(tmp_path / "binary"), str(tmp_path / "binary_again"), "--out", str(tmp_path / "same")])
    assert "not comparable" not in (tmp_path / "same" / "compare.md").read_text()
