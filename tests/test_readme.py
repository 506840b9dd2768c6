"""Numbers the README states that a command gives, rerun: the quick start's one-epoch MNIST line
(it needs the benchmark data: VAE_DATA)."""

import os
import re
from pathlib import Path

import pytest

from conftest import compose_config
from inference.runs import train

README = Path(__file__).resolve().parents[1] / "README.md"
DATA = Path(os.environ.get("VAE_DATA", "/nonexistent"))


@pytest.mark.slow  # one epoch of MNIST and 500 test points at K=100: about 20 s
@pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason="set VAE_DATA to the folder of the benchmark data sets")
def test_the_quick_starts_mnist_line_gives_the_numbers_it_states(tmp_path):
    text = README.read_text()
    command = re.search(r'make run ARGS="(data=mnist [^"]*)"', text).group(1).replace("$VAE_DATA", str(DATA))
    stated = re.search(r"the guide proposal gives −([\d.]+) ± ([\d.]+) nats and the prior proposal −([\d.]+) ± ([\d.]+)", text)
    guide, prior = -float(stated.group(1)), -float(stated.group(3))
    metrics = train(compose_config(*command.split(), "train.progress=false", "train.device=cpu"), tmp_path)
    # the same seed and points: what differs is arithmetic, far below the last digit stated (0.1 nats)
    assert metrics["test"]["log_px"]["mean"] == pytest.approx(guide, abs=0.1)
    assert metrics["test"]["log_px_prior"]["mean"] == pytest.approx(prior, abs=0.1)
