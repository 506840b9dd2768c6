"""A non-editable install: the wheel carries the configs (as inference.conf, not a top-level
package named conf), and its console scripts train, evaluate and compare from a directory
outside the repository, with a user's own config directory added by --config-dir. And the
editable install of `make setup`: its console scripts find the checkout's configs from anywhere."""

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow  # fresh interpreters; the wheel's test builds a wheel and a venv: about 30 s

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "models", "guides", "inference", "conf"]


def run(*command, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_a_wheel_installed_in_a_fresh_venv_runs_its_console_scripts_from_anywhere(tmp_path):
    source = tmp_path / "source"  # a copy of the tracked sources: no build/ or egg-info left by a checkout
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", source, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("*.whl")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)  # this pip installs into it (--python): no ensurepip
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    # the dependencies (torch, pyro, hydra, ...) from this environment, without its editable install of the suite
    purelib = Path(run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip())
    (purelib / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "my_conf" / "experiment").mkdir(parents=True)
    (elsewhere / "my_conf" / "experiment" / "mine.yaml").write_text("# @package _global_\nz_dim: 3\n")
    where = run(venv / "bin" / "python", "-c", "import importlib.util, inference; print(inference.__file__, importlib.util.find_spec('conf'))", cwd=elsewhere).stdout
    assert where.startswith(str(purelib / "inference")) and where.strip().endswith("None")  # installed, and no top-level conf

    tiny = ["train.epochs=1", "train.progress=false", "evaluation.num_particles=5", "evaluation.figures=false", "evaluation.prior_proposal=false"]
    run(venv / "bin" / "vae-train", "--config-dir", "my_conf", "experiment=mine", *tiny, "hydra.run.dir=runs/a", cwd=elsewhere)
    assert yaml.safe_load((elsewhere / "runs" / "a" / ".hydra" / "config.yaml").read_text())["z_dim"] == 3  # the user's experiment, found beside the installed configs
    metrics = json.loads((elsewhere / "runs" / "a" / "metrics.json").read_text())
    assert metrics["train"]["epochs"] == 1 and metrics["test"]["log_px"]["num_particles"] == 5

    run(venv / "bin" / "vae-evaluate", "run=runs/a", "evaluation.num_particles=7", cwd=elsewhere)
    assert json.loads((elsewhere / "runs" / "a" / "metrics.json").read_text())["test"]["log_px"]["num_particles"] == 7
    table = run(venv / "bin" / "vae-compare", "runs", cwd=elsewhere).stdout
    assert "| a | " in table and table.count("| complete |") == 1


def test_the_console_scripts_of_the_set_up_environment_find_their_configs_from_anywhere(tmp_path):
    """The editable install `make setup` makes (the one running these tests): vae-train, run
    outside the repository, composes its config from the checkout's conf/ (a relative config
    path once made Hydra look for a module named `conf`). vae-evaluate shares the path."""
    script = Path(sys.executable).parent / "vae-train"
    if not script.exists():
        pytest.skip("the suite is not installed in this environment (make setup installs it)")
    printed = run(script, "--cfg", "job", "train.epochs=7", cwd=tmp_path).stdout
    assert yaml.safe_load(printed)["train"]["epochs"] == 7
