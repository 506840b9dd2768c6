"""Nothing lost: checkpoints that survive SIGKILL, resume that reproduces an uninterrupted run,
run directories that one process at a time may write, and NaN met by a clear stop or a rollback."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import SMALL_NETS, TINY, compose_config, run_command, without_timings
from inference.runs.rundir import locked
from inference.training.checkpoint import load_checkpoint
from inference.train import main as train_main, train
from inference.training import NonFiniteError

ROOT = Path(__file__).resolve().parents[3]
# Long enough (about 3 s of training on 2 cores) to be killed in the middle; dynamic
# binarization, so that a resumed run must restore the RNG to draw the same data.
LONG = [*TINY, *SMALL_NETS, "train.epochs=60", "train.checkpoint_every=1"]


def launch(run_dir: Path, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "inference.train", *LONG, *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def checkpointed_epoch(run_dir: Path) -> int:
    try:
        return load_checkpoint(run_dir)["progress"]["epoch"]
    except (FileNotFoundError, ValueError):  # not written yet
        return -1


@pytest.mark.slow  # kills a run in a subprocess and resumes it
def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_metrics(tmp_path):
    reference = finish(launch(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr

    killed = launch(tmp_path / "killed")
    deadline = time.monotonic() + 120
    while checkpointed_epoch(tmp_path / "killed") < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    # while it trains, another process (this one, the command run in it: a fresh interpreter
    # takes longer to start than the run has left to train) may not resume the same run directory
    code, printed = run_command(train_main, *LONG, "train.resume=true", f"hydra.run.dir={tmp_path / 'killed'}")
    assert code == 1 and "is in use by process" in printed, printed
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate()
    assert not (tmp_path / "killed" / "metrics.json").exists(), "the run ended before it was killed: make LONG longer"
    interrupted_at = checkpointed_epoch(tmp_path / "killed")
    assert 3 <= interrupted_at < 60

    resumed = finish(launch(tmp_path / "killed", "train.resume=true"))  # the killed process's lock died with it
    assert resumed.returncode == 0, resumed.stderr
    expected = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    got = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert [row["epoch"] for row in got["train"]["curve"]] == list(range(1, 61))  # no gap, no repeat
    assert without_timings(got) == without_timings(expected)


@pytest.mark.slow  # a sweep in subprocesses, killed and re-run
def test_a_killed_sweep_is_finished_by_resume_auto_without_retraining_a_finished_job(tmp_path):
    """Job 0 finished, job 1 killed while it trained, job 2 never started: the same --multirun
    command with train.resume=auto skips job 0 (its files untouched), continues job 1 from its
    checkpoint (every epoch once) and runs job 2."""
    sweep = tmp_path / "sweep"
    # 20 epochs: the kill comes 3 epochs into job 1 (jobs run one after another in one process)
    command = [sys.executable, "-m", "inference.train", "--multirun", *LONG, "train.epochs=20", "train.seed=0,1,2", f"hydra.sweep.dir={sweep}"]
    killed = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while checkpointed_epoch(sweep / "1") < 3 and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate()
    assert (sweep / "0" / "metrics.json").exists() and not (sweep / "1" / "metrics.json").exists(), "kill came too late: make LONG longer"
    assert not (sweep / "2").exists()
    finished = {name: (sweep / "0" / name).read_bytes() for name in ("metrics.json", "checkpoint.pt", ".hydra/config.yaml")}
    original_config = (sweep / "1" / ".hydra" / "config.yaml").read_text()

    again = subprocess.run([*command, "train.resume=auto"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert {name: (sweep / "0" / name).read_bytes() for name in finished} == finished
    assert not (sweep / "0" / ".hydra_resume").exists()  # a skipped job writes no config
    curves = {job: json.loads((sweep / job / "metrics.json").read_text())["train"]["curve"] for job in ("1", "2")}
    assert all([row["epoch"] for row in curve] == list(range(1, 21)) for curve in curves.values())
    assert (sweep / "1" / ".hydra" / "config.yaml").read_text() == original_config  # what compare reads
    assert (sweep / "1" / ".hydra_resume" / "config.yaml").is_file()
    assert (sweep / "2" / ".hydra" / "config.yaml").is_file() and not (sweep / "2" / ".hydra_resume").exists()
    assert "finished run (metrics.json): skipped" in (sweep / "0" / "train.log").read_text()


def test_resume_refuses_a_changed_config_but_lets_the_run_grow(tmp_path):
    train(compose_config(*TINY, *SMALL_NETS), tmp_path)
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in optim.lr: 0.001 → 0.01; z_dim: 4 → 5\. Resume"):
        train(compose_config(*TINY, *SMALL_NETS, "train.resume=true", "z_dim=5", "optim.lr=0.01"), tmp_path)
    # the evaluation runs after training: its keys may change (and a later version may add some)
    grown = train(compose_config(*TINY, *SMALL_NETS, "train.resume=true", "train.epochs=3", "evaluation.num_particles=4"), tmp_path)
    assert [row["epoch"] for row in grown["train"]["curve"]] == [1, 2, 3]
    assert grown["test"]["log_px"]["num_particles"] == 4


def test_a_new_run_refuses_a_directory_that_holds_a_checkpoint(tmp_path):
    train(compose_config(*TINY, *SMALL_NETS), tmp_path)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match="already holds a checkpoint: continue that run with train.resume=true"):
        train(compose_config(*TINY, *SMALL_NETS), tmp_path)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_a_refused_second_command_leaves_the_first_runs_files_as_they_were(tmp_path):
    """A second `train` into a finished run's directory, and one into a directory another
    process holds, are refused on the terminal; the run's train.log and .hydra/ stay byte for byte."""
    run_dir = tmp_path / "run"
    code, printed = run_command(train_main, *TINY, *SMALL_NETS, f"hydra.run.dir={run_dir}")
    assert code == 0, printed
    files = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.parent.name in ("run", ".hydra")}
    assert Path("train.log") in files and Path(".hydra/config.yaml") in files
    code, printed = run_command(train_main, *TINY, *SMALL_NETS, "z_dim=3", f"hydra.run.dir={run_dir}")
    assert code == 1 and "already holds a checkpoint" in printed, printed
    with locked(run_dir):
        code, printed = run_command(train_main, *TINY, *SMALL_NETS, "train.resume=true", f"hydra.run.dir={run_dir}")
    assert code == 1 and "is in use by process" in printed, printed
    after = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.parent.name in ("run", ".hydra")}
    assert after == files and not (run_dir / ".hydra_resume").exists()


def test_a_held_run_directory_is_refused(tmp_path):
    with locked(tmp_path):
        with pytest.raises(RuntimeError, match=f"{tmp_path} is in use by process {os.getpid()}"):
            train(compose_config(*TINY, *SMALL_NETS), tmp_path)
    assert not (tmp_path / ".lock").exists()


# The decoder's 32nd forward pass turns NaN: three passes come before training (the estimators'
# look at the program's plates, the dry run of its sites, and the trace that finds its
# param-store parameters), so it is step 29's.
FAIL_AT = "+decoder.fail_at=32"
FAULTY = [*TINY, "train.epochs=4", "train.checkpoint_every=1", "data.binarize=fixed", "encoder.hidden=[32]", "decoder._target_=faults.FaultyMLP", "decoder.hidden=[32]"]


@pytest.mark.filterwarnings("ignore:Encountered NaN")  # Pyro says so before the guard does
def test_a_nan_loss_stops_naming_where_and_the_intact_checkpoint(tmp_path):
    # 20 steps an epoch (1257 points in batches of 64); three passes come before
    # training, so the decoder's 32nd is step 29, in epoch 2
    with pytest.raises(NonFiniteError) as error:
        train(compose_config(*FAULTY, FAIL_AT), tmp_path)
    message = str(error.value)
    assert "at epoch 2, step 29: the loss was nan; non-finite gradients of " in message
    assert "non-finite log-probabilities at model site 'x'" in message
    assert f"the last good checkpoint is {tmp_path / 'checkpoint.pt'} (epoch 1)" in message
    assert "train.on_nan=rollback" in message
    state = load_checkpoint(tmp_path)
    assert state["progress"]["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.filterwarnings("ignore:Encountered NaN")  # Pyro says so before the guard does
def test_a_nan_gradient_names_the_parameters(tmp_path):
    with pytest.raises(NonFiniteError, match=r"the loss was finite; non-finite gradients of model\.decoder\.0\.weight"):
        train(compose_config(*FAULTY, FAIL_AT, "+decoder.fault=grad"), tmp_path)


@pytest.mark.filterwarnings("ignore:Encountered NaN")  # Pyro says so before the guard does
def test_rollback_restores_the_last_good_state_with_a_lower_rate_and_finishes(tmp_path):
    metrics = train(compose_config(*FAULTY, FAIL_AT, "train.on_nan=rollback"), tmp_path)
    assert metrics["train"]["rollbacks"] == [{"epoch": 2, "step": 29, "to_epoch": 1, "lr": 5e-4}]
    assert [row["epoch"] for row in metrics["train"]["curve"]] == [1, 2, 3, 4]
    assert metrics["train"]["steps"] == 80  # the lost steps of epoch 2 are not counted twice
    assert load_checkpoint(tmp_path)["optimizer"]["param_groups"][0]["lr"] == pytest.approx(5e-4)


@pytest.mark.filterwarnings("ignore:Encountered NaN")  # Pyro says so before the guard does
def test_a_deferred_check_stops_and_rolls_back_as_the_per_step_check_does(tmp_path):
    """train.finite_check=deferred (CUDA's default with a fused optimizer) reads the flag at the
    epoch's end, 11 steps after the bad one: the same step named, the same checkpoint kept, the
    same rollback."""
    deferred = ["optim.fused=true", "train.finite_check=deferred"]
    with pytest.raises(NonFiniteError) as error:
        train(compose_config(*FAULTY, FAIL_AT, *deferred), tmp_path / "stop")
    assert "at epoch 2, step 29: the loss was nan; non-finite gradients of " in str(error.value)
    # the check was read at the epoch's end: the re-run of the bad batch then no longer meets the
    # decoder's one-off fault (the per-step check re-runs it at once and names site 'x')
    assert "non-finite log-probabilities" not in str(error.value)
    assert load_checkpoint(tmp_path / "stop")["progress"]["epoch"] == 1
    metrics = train(compose_config(*FAULTY, FAIL_AT, *deferred, "train.on_nan=rollback"), tmp_path / "rollback")
    assert metrics["train"]["rollbacks"] == [{"epoch": 2, "step": 29, "to_epoch": 1, "lr": 5e-4}]
    assert [row["epoch"] for row in metrics["train"]["curve"]] == [1, 2, 3, 4] and metrics["train"]["steps"] == 80


@pytest.mark.cuda
@pytest.mark.filterwarnings("ignore:Encountered NaN")  # Pyro says so before the guard does
def test_on_cuda_the_check_is_deferred_by_default_and_stops_and_rolls_back_alike(tmp_path):
    cuda = ["train.device=cuda"]  # train.finite_check=auto, Adam fused: the deferred check
    with pytest.raises(NonFiniteError) as error:
        train(compose_config(*FAULTY, FAIL_AT, *cuda), tmp_path / "stop")
    assert "at epoch 2, step 29: the loss was nan; non-finite gradients of " in str(error.value)
    assert "non-finite log-probabilities" not in str(error.value)  # read at the epoch's end, as on the CPU when deferred
    assert load_checkpoint(tmp_path / "stop")["progress"]["epoch"] == 1
    metrics = train(compose_config(*FAULTY, FAIL_AT, *cuda, "train.on_nan=rollback"), tmp_path / "rollback")
    assert metrics["train"]["rollbacks"] == [{"epoch": 2, "step": 29, "to_epoch": 1, "lr": 5e-4}]
    assert [row["epoch"] for row in metrics["train"]["curve"]] == [1, 2, 3, 4] and metrics["train"]["steps"] == 80


@pytest.mark.cuda
@pytest.mark.parametrize("step", [[], ["objective=graph_trace_elbo", "train.cuda_graphs=true"]], ids=["eager", "captured"])
def test_a_cuda_run_resumes_from_its_checkpoint(step, tmp_path):
    """The checkpoint is loaded onto the run's device: its RNG states must go back to the CPU."""
    cuda = [*TINY, *SMALL_NETS, "train.device=cuda", *step]
    first = train(compose_config(*cuda, "train.epochs=2"), tmp_path)
    resumed = train(compose_config(*cuda, "train.epochs=3", "train.resume=true"), tmp_path)
    assert [row["epoch"] for row in resumed["train"]["curve"]] == [1, 2, 3]
    assert resumed["train"]["curve"][:2] == first["train"]["curve"]
    assert resumed["train"]["steps"] == 3 * first["train"]["steps"] // 2


@pytest.mark.filterwarnings("ignore:Encountered NaN")  # Pyro says so before the guard does
def test_rollbacks_are_bounded(tmp_path):
    with pytest.raises(NonFiniteError, match=r"Training stopped after 0 rollbacks \(train.max_rollbacks=0\)"):
        train(compose_config(*FAULTY, FAIL_AT, "train.on_nan=rollback", "train.max_rollbacks=0"), tmp_path)


class _RunsCode:
    """Unpickling this calls a function: what a crafted checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_crafted_checkpoint_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"model": {}, "progress": _RunsCode(marker)}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"checkpoint.pt was refused: it holds pickled objects other than tensors .*\(it refers to [\w.]+\)"):
        train(compose_config(*TINY, *SMALL_NETS, "train.resume=true"), tmp_path)
    assert not marker.exists()


def failing_writes(monkeypatch, fail) -> list[int]:
    """``torch.save`` into checkpoint files fails half-way, as on a full disk, for the calls
    (counted from 1) for which ``fail(call)`` is true: some bytes written, then an OSError."""
    calls, save = [], torch.save

    def writer(obj, f, *args, **kwargs):
        calls.append(len(calls) + 1)
        if fail(calls[-1]):
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(28, "No space left on device")
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", writer)
    return calls


def test_a_checkpoint_write_that_fails_half_way_keeps_the_last_one_and_training_goes_on(tmp_path, monkeypatch, caplog):
    # writes: before training (epoch 0), then after epochs 1, 2, 3, 4; the writes of epochs 2 and 3 fail
    failing_writes(monkeypatch, lambda call: call in (3, 4))
    with caplog.at_level("WARNING"):
        metrics = train(compose_config(*TINY, *SMALL_NETS, "train.epochs=4", "train.checkpoint_every=1"), tmp_path)
    warned = [r.getMessage() for r in caplog.records if "could not write the checkpoint" in r.getMessage()]
    assert len(warned) == 2 and "epoch 3 (" in warned[1] and f"{tmp_path / 'checkpoint.pt'} still holds epoch 1" in warned[1]
    assert "No space left on device" in warned[0]
    assert metrics["train"]["epochs"] == 4 and (tmp_path / "metrics.json").is_file()
    assert load_checkpoint(tmp_path)["progress"]["epoch"] == 4  # the last write went through
    assert not list(tmp_path.glob(".checkpoint.pt.*"))  # no half-written temporary left


def test_a_failed_final_checkpoint_write_fails_the_run_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    failing_writes(monkeypatch, lambda call: call == 4)  # epoch 0, 1, 2 written; epoch 3, the last, fails
    with pytest.raises(OSError, match=r"could not write the final checkpoint .*No space left on device.*it still holds epoch 2.*train.resume=true"):
        train(compose_config(*TINY, *SMALL_NETS, "train.epochs=3", "train.checkpoint_every=1"), tmp_path)
    assert load_checkpoint(tmp_path)["progress"]["epoch"] == 2
    assert not (tmp_path / "metrics.json").exists()  # not finished: train.resume=auto continues it
    monkeypatch.undo()
    resumed = train(compose_config(*TINY, *SMALL_NETS, "train.epochs=3", "train.checkpoint_every=1", "train.resume=true"), tmp_path)
    whole = train(compose_config(*TINY, *SMALL_NETS, "train.epochs=3", "train.checkpoint_every=1"), tmp_path / "whole")
    assert without_timings(resumed) == without_timings(whole)
