"""python -m inference.evaluate: re-evaluation of a finished run reproduces its numbers and
adds new estimators without losing what metrics.json held."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SMALL_NETS, TINY, without_timings
from inference.runs import reevaluate

ROOT = Path(__file__).resolve().parents[2]
AIS = ["evaluation.ais=true", "evaluation.ais_points=8", "evaluation.ais_steps=20", "evaluation.ais_chains=4", "evaluation.ais_leapfrog=3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    command = [sys.executable, "-m", "inference.train", *TINY, *SMALL_NETS, f"hydra.run.dir={run_dir}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return run_dir


def test_reevaluation_reproduces_the_run_and_adds_estimators(run):
    original = json.loads((run / "metrics.json").read_text())
    command = [sys.executable, "-m", "inference.evaluate", f"run={run}", *AIS]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "test log p̂(x), AIS" in done.stderr and "BDMC on 8 simulated points" in done.stderr
    updated = json.loads((run / "metrics.json").read_text())
    assert updated["train"] == original["train"]  # kept as it was
    for split in ("valid", "test"):
        new = {k: v for k, v in updated[split].items() if k not in ("log_px_ais", "bdmc")}
        assert without_timings(new) == without_timings(original[split])  # the same seed, the same numbers
    assert updated["test"]["log_px_ais"]["n"] == 8 and updated["test"]["log_px_ais"]["steps"] == 20
    assert updated["test"]["bdmc"]["upper"]["mean"] is not None


def test_reevaluation_refuses_what_it_cannot_change(run, tmp_path):
    with pytest.raises(ValueError, match="z_dim=3: only evaluation.\\* and train.device can change"):
        reevaluate(run, ["z_dim=3"])
    with pytest.raises(Exception, match="num_particle"):
        reevaluate(run, ["evaluation.num_particle=3"])
    with pytest.raises(FileNotFoundError, match="must name a run directory written by inference.train"):
        reevaluate(tmp_path)
