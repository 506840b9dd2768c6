"""python -m inference.evaluate: re-evaluation of a finished run reproduces its numbers and
adds new estimators without losing what metrics.json held."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from conftest import SMALL_NETS, TINY, run_command, without_timings
from inference.evaluate import main as evaluate_main
from inference.train import main as train_main
from inference.runs import reevaluate, summary

RECONSTRUCTION = [f"+evaluation.methods.recon.{k}={v}" for k, v in (("_target_", "user_evaluations.ReconstructionError"), ("draws", 2), ("splits", "[valid,test]"))]
AIS = ["evaluation.ais=true", "evaluation.ais_points=8", "evaluation.ais_steps=20", "evaluation.ais_chains=4", "evaluation.ais_leapfrog=3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run directory as the command writes it (.hydra/ included), trained in this process."""
    run_dir = tmp_path_factory.mktemp("run")
    code, printed = run_command(train_main, *TINY, *SMALL_NETS, *RECONSTRUCTION, f"hydra.run.dir={run_dir}")
    assert code == 0, printed
    return run_dir


def test_a_users_method_lands_in_metrics_and_reevaluation_reproduces_every_number(run, tmp_path):
    """The run trained with a user's own method (``+evaluation.methods.recon._target_=...``) on
    two splits: its numbers under its name; a re-evaluation with the run's own settings gives
    every number the run gave, as each method draws from its own stream."""
    original = json.loads((run / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert 0 < original[split]["recon"]["mse"] < 1 and original[split]["recon"]["draws"] == 2
    assert "test recon: mse" in summary(original, run)
    shutil.copytree(run, tmp_path / "again")
    again = reevaluate(tmp_path / "again", [])
    assert without_timings(again) == without_timings(original)
    # a method the run did not have, added by the command's override, lands beside the others
    more = "+evaluation.methods.more._target_=user_evaluations.ReconstructionError"
    code, printed = run_command(evaluate_main, f"run={tmp_path / 'again'}", more, "+evaluation/methods=active_units")
    assert code == 0, printed
    added = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert 0 < added["test"]["more"]["mse"] < 1 and "more" not in added["valid"]  # its splits: [test] by default
    assert added["test"]["active_units"]["count"] == 4  # a shipped method by its file, as in training
    assert without_timings(added["test"]["recon"]) == without_timings(original["test"]["recon"])


@pytest.mark.slow  # the command, with AIS: about 5 s
def test_reevaluation_reproduces_the_run_and_adds_estimators(run):
    """The command as it runs (in this process; test_install.py starts vae-evaluate in one of its own)."""
    original = json.loads((run / "metrics.json").read_text())
    hydra_files = {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()}
    nuts = ["evaluation.posterior_points=1", "evaluation.posterior_samples=10", "evaluation.posterior_warmup=10", "evaluation.posterior_chains=2"]
    code, printed = run_command(evaluate_main, f"run={run}", *AIS, *nuts)
    assert code == 0, printed
    assert "test log p̂(x), AIS" in printed and "BDMC on 8 simulated points" in printed and " ± " in printed.split("BDMC")[1]
    assert "evaluated the run's checkpoint in" in printed and "] - trained" not in printed and "NUTS on 1 test points" in printed
    assert "evaluating ais on test" in printed and "evaluating posterior on test" in printed  # what it is doing, as it does it
    assert {p.name: p.read_bytes() for p in (run / ".hydra").iterdir()} == hydra_files  # the training's config, untouched
    assert "evaluation.ais_steps=20" in (run / "evaluate.log").read_text()  # the log names what changed
    updated = json.loads((run / "metrics.json").read_text())
    assert updated["train"] == original["train"]  # kept as it was
    for split in ("valid", "test"):
        new = {k: v for k, v in updated[split].items() if k not in ("log_px_ais", "bdmc", "posterior")}
        assert without_timings(new) == without_timings(original[split])  # the same seed, the same numbers
    assert updated["test"]["log_px_ais"]["n"] == 8 and updated["test"]["log_px_ais"]["steps"] == 20
    assert updated["test"]["bdmc"]["upper"]["mean"] is not None


def _numbers(value, path=""):
    """Every number in a metrics object by its path, timings and the pass size left out."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() if "seconds" not in key and key != "chunk_size" for k, v in _numbers(item, f"{path}.{key}" if path else key).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _numbers(item, f"{path}[{i}]").items()}
    return {path: value} if isinstance(value, (int, float)) and not isinstance(value, bool) else {}


@pytest.mark.slow  # four re-evaluations with AIS, three with the gaps
def test_every_estimate_is_the_same_whatever_the_pass_size_and_the_company(run, tmp_path):
    """log p̂(x) and its diagnostics, the gaps, AIS and BDMC at the default memory budget, with
    the pass size fixed small, and at a budget that splits the work into many passes: the same
    numbers up to the last bits of batched arithmetic. AIS alone: the same numbers exactly."""
    gaps = ["evaluation.gaps=true", "evaluation.gap_points=3", "evaluation.gap_particles=64", "+evaluation.methods.gaps.fit_steps=100"]
    settings = ("evaluation.figures=true", "evaluation.chunk_size=16", "evaluation.memory_budget_mb=3")
    numbers = []
    for i, setting in enumerate(settings):
        shutil.copytree(run, tmp_path / str(i))
        metrics = reevaluate(tmp_path / str(i), [*gaps, *AIS, setting])  # the gaps draw before AIS
        numbers.append(_numbers({split: metrics[split] for split in ("valid", "test")}))
    assert numbers[0]["test.gaps.approximation.mean"] is not None and numbers[0]["test.bdmc.upper.mean"] is not None
    assert (tmp_path / "0" / "plots" / "log_px_against_k.png").is_file()
    # AIS alone gives the numbers it gave beside the gaps and the figures: each method draws from its own stream
    shutil.copytree(run, tmp_path / "alone")
    alone = _numbers(reevaluate(tmp_path / "alone", AIS)["test"])
    assert {key: value for key, value in alone.items() if key.startswith(("log_px_ais", "bdmc"))} == {
        key[len("test.") :]: value for key, value in numbers[0].items() if key.startswith(("test.log_px_ais", "test.bdmc"))
    }
    # relative 1e-5 of the estimates; the gaps and standard errors are differences of them, so
    # they get that much of the estimates' size as an absolute tolerance
    scale = 1e-5 * abs(numbers[0]["test.log_px.mean"])
    for other in numbers[1:]:
        assert other.keys() == numbers[0].keys()
        for key, value in numbers[0].items():
            assert other[key] == pytest.approx(value, rel=1e-5, abs=scale), key


def test_the_command_refuses_bad_overrides_and_missing_runs(run, tmp_path):
    """Composition checks keys and types against the schemas; a run=... that names no run leaves
    no directory behind; neither touches the run. (The command in this process: its refusals.)"""
    before = (run / "metrics.json").read_bytes()
    cases = [
        ([f"run={run}", "evaluation.num_particles=many"], "Value 'many' of type 'str' could not be converted to Integer"),
        ([f"run={run}", "evaluation.num_particle=3"], "Could not override 'evaluation.num_particle'"),
        ([f"run={run}", "evaluation.ais_start=middle"], r"Invalid value 'middle', expected one of [prior, guide]"),
        ([f"run={tmp_path / 'nothing'}"], "must name a run directory written by inference.train"),
        ([], "Missing mandatory value: run"),
    ]
    for arguments, message in cases:
        code, printed = run_command(evaluate_main, *arguments)
        assert code != 0 and message in printed, (arguments, printed)
    assert not (tmp_path / "nothing").exists()
    assert (run / "metrics.json").read_bytes() == before


def test_a_run_from_before_a_key_existed_is_reevaluated_with_its_default(run, tmp_path):
    """Re-evaluation types the run's plain config with the schemas: a key the run's version did
    not have yet gets the schema's default instead of failing; a run from before
    evaluation.methods gets the default methods, each in its own stream."""
    old_run = tmp_path / "old"
    shutil.copytree(run, old_run)
    config = yaml.safe_load((old_run / ".hydra" / "config.yaml").read_text())
    del config["evaluation"]["intervene"], config["train"]["finite_check"], config["evaluation"]["methods"]
    (old_run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = reevaluate(old_run, ["evaluation.figures=false"])
    assert metrics["test"]["log_px"]["mean"] == pytest.approx(json.loads((run / "metrics.json").read_text())["test"]["log_px"]["mean"])
    assert "bits_per_dim" in metrics["test"]  # a default method


def test_reevaluation_takes_its_own_thread_count(run):
    before = torch.get_num_threads()
    try:
        reevaluate(run, ["train.threads=2", "evaluation.figures=false", "evaluation.splits=[test]"])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_reevaluation_refuses_what_it_cannot_change(run, tmp_path):
    with pytest.raises(ValueError, match="z_dim=3: only evaluation.\\*, train.device, train.progress and train.threads can change"):
        reevaluate(run, ["z_dim=3"])
    with pytest.raises(Exception, match="num_particle"):
        reevaluate(run, ["evaluation.num_particle=3"])
    with pytest.raises(FileNotFoundError, match="must name a run directory written by inference.train"):
        reevaluate(tmp_path)
