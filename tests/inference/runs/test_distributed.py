"""One run on two processes (torch.distributed, gloo on the CPU): torchrun writes one run
directory, whose numbers agree with a one-process run's within their noise; the evaluation is a
one-process evaluation's, point by point; a killed rank ends the other; a resume on two
processes continues exactly."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL_NETS, TINY, compose_config, without_timings
from inference.data import Dataset
from inference.data.dataset import with_labels_kept
from inference.runs import reevaluate, train
from inference.runs.training_run import check_distributable
from inference.training.checkpoint import load_checkpoint
from inference.training.distributed import World, started
from inference.training.loop import epoch_batches

ROOT = Path(__file__).resolve().parents[3]
# long enough to be killed in the middle (about 1.5 s of training on 2 cores); a batch the two share
RUN = [*TINY, *SMALL_NETS, "train.epochs=15", "train.checkpoint_every=1", "train.batch_size=64", "evaluation.prior_proposal=true",
       "train.distributed_timeout=20"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ranks(run_dir: Path, *overrides: str) -> list[subprocess.Popen]:
    """The two ranks of a run as torchrun starts them (its environment, without its agent)."""
    port = free_port()
    processes = []
    for rank in (0, 1):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "inference.train", *RUN, *overrides, f"hydra.run.dir={run_dir}"]
        processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    return processes


@pytest.mark.slow  # five processes that start torch, two at a time: about 40 s
def test_a_run_on_two_processes(tmp_path):
    """One test, so that one test worker launches the reference run that its parts compare with."""
    run_dir = tmp_path / "two" / "run"  # launched by torchrun, as a user launches it
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "inference.train", *RUN, f"hydra.run.dir={run_dir}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    writes_one_run_directory_that_agrees_with_one_process(run_dir, tmp_path / "one")
    a_one_process_reevaluation_gives_its_log_px_point_by_point(run_dir, tmp_path / "reevaluated")
    a_resume_on_another_number_of_processes_is_refused(run_dir, tmp_path / "resumed_alone")
    a_killed_rank_ends_the_run_and_a_resume_on_two_processes_continues_it_exactly(run_dir, tmp_path / "killed")


def writes_one_run_directory_that_agrees_with_one_process(two_processes: Path, one_process: Path):
    metrics = json.loads((two_processes / "metrics.json").read_text())
    assert metrics["train"]["world_size"] == 2 and metrics["train"]["epochs"] == 15
    # rank 0 wrote the run's files and config; rank 1 its log, beside them, and no directory of its own
    assert (two_processes / ".hydra" / "config.yaml").is_file() and (two_processes / "checkpoint.pt").is_file()
    assert "rank 1 of 2 (gloo) on cpu" in (two_processes / "train.rank1.log").read_text()
    assert sorted(p.name for p in two_processes.parent.iterdir()) == ["run"]

    one = train(compose_config(*RUN), one_process)  # the same config on one process: the same steps on the same batches
    assert one["train"]["world_size"] == 1 and [r["epoch"] for r in one["train"]["curve"]] == [r["epoch"] for r in metrics["train"]["curve"]]
    two, one = metrics["test"]["log_px"], one["test"]["log_px"]
    # the same data and steps, different Monte Carlo draws: the two trainings end apart by their
    # noise, which on 32 test points is mostly the estimate's own (the points are the same)
    assert abs(two["mean"] - one["mean"]) < 4 * np.hypot(two["stderr"], one["stderr"]), (two, one)


def a_one_process_reevaluation_gives_its_log_px_point_by_point(two_processes: Path, run_dir: Path):
    """The run's evaluation shared the points out between its two processes; one process
    estimates each point alike."""
    shutil.copytree(two_processes, run_dir)
    written = dict(np.load(run_dir / "per_point.npz"))
    reevaluate(run_dir)
    again = dict(np.load(run_dir / "per_point.npz"))
    for key in ("test.log_px", "test.log_px_prior", "test.elbo", "valid.log_px"):
        np.testing.assert_allclose(again[key], written[key], atol=1e-5)


def a_resume_on_another_number_of_processes_is_refused(two_processes: Path, run_dir: Path):
    shutil.copytree(two_processes, run_dir)
    with pytest.raises(ValueError, match=r"cannot resume .* on 1 process: it trained on 2, whose Monte Carlo streams it continues"):
        train(compose_config(*RUN, "train.resume=true", "train.epochs=16"), run_dir)


def a_killed_rank_ends_the_run_and_a_resume_on_two_processes_continues_it_exactly(two_processes: Path, run_dir: Path):
    leader, other = ranks(run_dir)
    deadline = time.monotonic() + 120
    while _checkpointed_epoch(run_dir) < 3 and time.monotonic() < deadline and leader.poll() is None:
        time.sleep(0.02)
    os.kill(other.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    _, stderr = leader.communicate(timeout=60)
    other.communicate()
    # rank 0 waited on rank 1 in a step: the run ended there, well within train.distributed_timeout
    assert leader.returncode != 0 and time.monotonic() - killed_at < 20, stderr[-2000:]
    assert not (run_dir / "metrics.json").exists() and 3 <= _checkpointed_epoch(run_dir) < 15, "the kill came too late: make RUN longer"

    resumed = ranks(run_dir, "train.resume=true")
    for process in resumed:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
    got, expected = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, two_processes))
    assert [row["epoch"] for row in got["train"]["curve"]] == list(range(1, 16))  # every epoch once
    assert without_timings(got) == without_timings(expected)  # as if it had never stopped


def _checkpointed_epoch(run_dir: Path) -> int:
    try:
        return load_checkpoint(run_dir)["progress"]["epoch"]
    except (FileNotFoundError, ValueError, EOFError, RuntimeError):  # not written yet
        return -1


def test_the_ranks_share_every_batch_and_its_labelled_points():
    """Every point of a batch on exactly one rank, the labelled ones (at the batch's end) among
    all ranks; a last batch smaller than the ranks joins the one before; the permutation is the
    shared stream's, the same for every rank."""
    import torch

    x = torch.rand(203, 4)
    data = with_labels_kept(Dataset("d", x, x[:5], x[:5], image_shape=(4,), labels={s: torch.arange(len(t)) % 2 for s, t in (("train", x), ("valid", x[:5]), ("test", x[:5]))}),
                            num_labeled=20, labeled_per_batch=4)
    world = [World(rank, 3, torch.device("cpu"), seed=7) for rank in range(3)]
    batches = [epoch_batches(data, 42, w.epoch_streams(1), min_size=3) for w in world]
    assert all(all(torch.equal(a, b) for a, b in zip(batches[0], other)) for other in batches[1:])  # the same permutation
    mask = data.batch_extra("train", ("mask",))["mask"]
    for batch in batches[0]:
        shares = [w.share(batch) for w in world]
        assert sorted(torch.cat(shares).tolist()) == sorted(batch.tolist())
        assert all(mask[share].any() for share in shares)  # each rank its share of the labelled points
    assert len(epoch_batches(Dataset("d", x[:85], x[:5], x[:5], image_shape=(4,)), 42, min_size=3)) == 2  # 42 + 43: the last point joined


def test_what_a_distributed_run_cannot_do_is_refused_at_start(monkeypatch):
    import torch

    cfg = compose_config(*TINY, "train.batch_size=100")
    with pytest.raises(ValueError, match=r"train.batch_size=100 is the whole batch, which the 3 processes share: it must be a multiple of 3; set train.batch_size=99"):
        check_distributable(cfg, World(0, 3, torch.device("cpu"), seed=0))
    with pytest.raises(ValueError, match="train.distributed=true, but the run was launched as one process: launch it with torchrun"):
        started(True, 10, torch.device("cpu"), 0)
    monkeypatch.setenv("RANK", "0"), monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="train.distributed=false, but the run was launched as 2 processes"):
        started(False, 10, torch.device("cpu"), 0)


@pytest.mark.parametrize("n, multiple, size", [(360, 1, 2), (360, 7, 2), (10, 4, 3), (2, 8, 3), (1000, 64, 4)])
def test_the_shards_cover_the_points_in_order_and_start_at_seed_groups(n, multiple, size):
    """Consecutive shards, one per rank, that together hold every point once in order, each
    starting at a multiple of the estimator's seed group (so that every point is drawn as in
    one process), as even as the groups allow."""
    import torch

    shards = [World(rank, size, torch.device("cpu"), seed=0).shard(n, multiple) for rank in range(size)]
    assert [i for s in shards for i in range(n)[s]] == list(range(n))
    assert all(s.start % multiple == 0 or s.start == n for s in shards)
    groups = [-(-(s.stop - s.start) // multiple) for s in shards]
    assert max(groups) - min(groups) <= 1
