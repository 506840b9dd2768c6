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
    assert rows[3]["status"] == "incomplete" and rows[3]["test ELBO"] == ""
    markdown = (sweep / "compare.md").read_text().splitlines()
    assert markdown[0].startswith("| run | guide | status | test ELBO | test log p̂(x) |") and len(markdown) == 7
    for figure in ("compare_bars.png", "compare_curves.png"):
        assert (sweep / figure).stat().st_size > 10_000


def test_compare_of_a_folder_without_runs_says_so(tmp_path):
    with pytest.raises(SystemExit) as exit:
        main([str(tmp_path)])
    assert exit.value.code == 2
