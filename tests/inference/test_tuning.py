"""hydra/sweeper=optuna with the suite: the task function returns the validation log p-hat(x),
the study maximizes it, a failed trial is logged and does not end the study, and compare reads
the sweep like any other."""

import json

import pytest
import yaml

from conftest import TINY, run_command
from inference.compare import main as compare
from inference.runs import FAILURE_MARK
from inference.train import main as train_main

# optuna 2.10 (what hydra-optuna-sweeper 1.2 takes) imports SQLAlchemy's declarative_base from
# where SQLAlchemy 1.x kept it; inference/train.py filters that at import, which pytest's per-test
# filters replace here, where the studies run in this process (the command's, in-process)
DECLARATIVE_BASE = r"ignore:The ``declarative_base\(\)`` function is now available"


@pytest.mark.slow  # an Optuna study of three trials
@pytest.mark.filterwarnings(DECLARATIVE_BASE)
def test_an_optuna_study_maximizes_the_validation_log_px_and_survives_a_failed_trial(tmp_path, capsys):
    sweep = tmp_path / "study"
    # train.max_rollbacks=-1 is refused at start: with the sampler's seed, trials 0 and 2 draw it
    code, printed = run_command(
        train_main, "--multirun", "experiment=tune_digits", *TINY,  # its networks as wide as the study draws them
        "hydra.sweeper.n_trials=3", "train.max_rollbacks=choice(-1,3)", f"hydra.sweep.dir={sweep}",
    )
    assert code == 0, printed

    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 3
    finished = {job.name: json.loads((job / "metrics.json").read_text()) for job in jobs if (job / "metrics.json").exists()}
    failed = [job.name for job in jobs if job.name not in finished]
    assert finished and failed  # both kinds of trial, from the seeded sampler
    for name in failed:
        assert f"{FAILURE_MARK} ValueError: config key train.max_rollbacks=-1" in (sweep / name / "train.log").read_text()
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = max(finished, key=lambda name: finished[name]["valid"]["log_px"]["mean"])
    assert result["best_value"] == finished[best]["valid"]["log_px"]["mean"]
    assert result["best_params"]["train.max_rollbacks"] == 3

    compare([str(sweep)])
    table = capsys.readouterr().out
    assert table.count("| failed (ValueError") == len(failed) and table.count("| complete |") == len(finished)


@pytest.mark.filterwarnings(DECLARATIVE_BASE)
def test_a_trial_whose_validation_value_is_null_or_absent_counts_as_the_worst_and_the_study_goes_on(tmp_path, monkeypatch):
    """metrics.json writes a non-finite estimate as null, and a run that did not reach the
    validation split has none: Optuna would fail such a trial, and its sweeper end the study."""
    import inference.train as entry

    values = iter([{"valid": {"log_px": {"mean": None}}}, {"test": {}}, {"valid": {"log_px": {"mean": -30.5}}}, {"valid": {"log_px": {"mean": -31.0}}}])
    monkeypatch.setattr(entry, "train", lambda cfg, run_dir: next(values))
    sweep = tmp_path / "study"
    code, _ = run_command(entry.main, "--multirun", "experiment=tune_digits", "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={sweep}")
    assert code == 0
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert result["best_value"] == -30.5  # all four trials ran, the null and the absent ones ranked last
    assert sum("null or absent: the study counts the trial as its worst value" in (job / "train.log").read_text() for job in sweep.iterdir() if job.is_dir()) == 2
