"""Sweeps under Hydra's joblib and submitit launchers, compared as one; the SLURM config; how
parallel jobs share out cores and GPUs."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import CONF, SMALL_NETS, TINY, assert_run_estimates_its_programs
from inference.compare import main as compare
from inference.runs.checks import pinned_device, thread_count
from inference.schema import typed

ROOT = Path(__file__).resolve().parents[2]


LAUNCHERS = {"joblib": ["hydra.launcher.n_jobs=2"], "submitit_local": ["hydra.launcher.timeout_min=10"]}
# joblib runs two jobs at once in one pool, where one job could write into another's directory;
# submitit runs each job in a process of its own, and one job shows that it works (and is a
# process less in the suite's time)
GUIDES = {"joblib": ("normal", "full_rank"), "submitit_local": ("full_rank",)}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, Path]:
    """A sweep over guides under each launcher (GUIDES)."""
    out = {}
    for launcher, extra in LAUNCHERS.items():
        out[launcher] = tmp_path_factory.mktemp(f"sweep-{launcher}")
        command = [sys.executable, "-m", "inference.train", "--multirun", f"hydra/launcher={launcher}", *extra]
        command += [*TINY, *SMALL_NETS, f"guide={','.join(GUIDES[launcher])}", f"hydra.sweep.dir={out[launcher]}"]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    return out


@pytest.mark.slow  # a sweep in subprocesses per launcher (the module's fixture)
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_each_job_of_the_sweep_writes_its_own_run_directory(sweeps, launcher):
    """Job N ran the Nth value of the sweep, and its metrics are those of its own checkpoint's
    programs (not another job's: the two guides estimate differently)."""
    classes = {"normal": "AmortizedNormal", "full_rank": "AmortizedFullRank"}
    for job, guide in enumerate(GUIDES[launcher]):
        run_dir = sweeps[launcher] / str(job)
        cfg = typed(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))
        assert cfg.guide._target_ == f"guides.{classes[guide]}"
        assert_run_estimates_its_programs(cfg, run_dir)


@pytest.mark.slow  # the sweeps
def test_joblib_jobs_share_out_the_cores(sweeps):
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert f"sweep job 0: {threads} torch threads on cpu" in (sweeps["joblib"] / "0" / "train.log").read_text()


@pytest.mark.slow  # the sweeps
def test_compare_reads_the_sweeps_of_both_launchers(sweeps, tmp_path):
    compare([*map(str, sweeps.values()), "--out", str(tmp_path)])
    with (tmp_path / "compare.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(r["status"] == "complete" for r in rows)
    assert sorted(r["guide"] for r in rows) == ["full_rank", "full_rank", "normal"]


def test_the_slurm_launcher_config_composes_with_its_documented_keys():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_task, launcher.array_parallelism) == ("gpu", 240, 1, 32)
    assert list(launcher.setup) == ["source .venv/bin/activate"]


def test_parallel_jobs_share_out_cores_and_gpus():
    joblib = OmegaConf.create({"n_jobs": 4})
    assert thread_count("auto", joblib, cpus=16) == 4
    assert thread_count("auto", OmegaConf.create({"n_jobs": -1}), cpus=16) == 1
    assert thread_count("auto", OmegaConf.create({"cpus_per_task": 6}), cpus=16) == 6
    assert thread_count("auto", None, cpus=16) is None and thread_count(3, joblib) == 3
    assert [pinned_device(torch.device("cuda"), job, 2) for job in range(3)] == [torch.device("cuda", i) for i in (0, 1, 0)]
    assert pinned_device(torch.device("cuda", 1), 0, 2) == torch.device("cuda", 1)  # asked for explicitly
    assert pinned_device(torch.device("cpu"), 3, 2) == torch.device("cpu")
