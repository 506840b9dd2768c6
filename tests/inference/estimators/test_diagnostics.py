"""Pareto k̂ and ESS of importance weights: small for a good guide, large for the prior
proposal in ten dimensions; the run's summary says when an estimate is unreliable."""

import datetime
import os
import subprocess
import sys
from functools import partial

import pytest
import torch

from conftest import CONF, SMALL_NETS, TINY, compose_config
from guides import AmortizedFullRank
from inference.data import Dataset
from inference.estimators.diagnostics import pareto_k_and_ess, summarize, unreliable
from inference.estimators import importance_sampling
from inference.train import train
from inference.training import fit
from models import MLP, LinearGaussian


def test_a_good_guide_has_small_pareto_k():
    torch.manual_seed(0)
    model = LinearGaussian.from_params(torch.randn(6, 2), torch.zeros(6), 0.5)
    x, test = model.sample(2000), model.sample(100)
    guide = AmortizedFullRank(partial(MLP, hidden=[32]), x_dim=6, z_dim=2)
    data = Dataset("lg", x, x[:0], test, image_shape=(6,))
    fit(model, guide, data, torch.optim.Adam(guide.parameters(), lr=1e-2), epochs=30, batch_size=100, progress=False)
    estimate = importance_sampling(model, guide.eval(), test, num_particles=1000, diagnose=True)
    assert (estimate.pareto_k < 0.5).double().mean() > 0.9
    assert estimate.ess.median() > 500  # most of the 1000 samples count


def test_the_prior_in_ten_dimensions_has_large_pareto_k():
    torch.manual_seed(0)
    model = LinearGaussian.from_params(torch.randn(20, 10), torch.zeros(20), 0.3)
    test = model.sample(100)
    estimate = importance_sampling(model, None, test, num_particles=1000, diagnose=True)
    assert (estimate.pareto_k > 0.7).double().mean() > 0.9
    assert estimate.ess.median() < 10  # a handful of the 1000 samples carry each estimate


def test_ess_counts_equal_weights_fully_and_one_weight_once():
    equal = torch.zeros(100, 1)
    one = torch.full((100, 1), -1e4)
    one[3] = 0.0
    _, ess = pareto_k_and_ess(torch.cat([equal, one], 1))
    assert torch.allclose(ess, torch.tensor([100.0, 1.0], dtype=torch.float64))


def test_the_summary_warns_when_too_many_points_are_unreliable(tmp_path):
    good = summarize(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([90.0, 80.0, 70.0]))
    assert good == {"pareto_k_mean": pytest.approx(0.2), "pareto_k_max": pytest.approx(0.3), "pareto_k_above_0.7": 0.0, "ess_min": 70.0, "ess_median": 80.0}
    assert unreliable(good) is None
    bad = summarize(torch.tensor([0.1, 0.9, 1.3]), torch.tensor([90.0, 2.0, 1.5]))
    assert unreliable(bad).startswith("the log p̂(x) estimate is unreliable: 67% of points have Pareto k̂ > 0.7")

    metrics = train(compose_config(*TINY, *SMALL_NETS, "evaluation.num_particles=100", "evaluation.prior_proposal=true"), tmp_path)
    diagnostics = {key: metrics["test"][key]["diagnostics"] for key in ("log_px", "log_px_prior")}
    assert set(diagnostics["log_px"]) == set(good) and 0 < diagnostics["log_px"]["ess_min"] <= diagnostics["log_px"]["ess_median"] <= 100
    assert diagnostics["log_px_prior"]["ess_median"] < diagnostics["log_px"]["ess_median"]


def test_too_few_samples_for_a_tail_give_no_k_hat_but_a_note():
    k_hat, ess = pareto_k_and_ess(torch.randn(8, 5))
    summary = summarize(k_hat, ess)
    assert summary["pareto_k_mean"] is None and "too few importance samples" in summary["pareto_k_note"]
    assert unreliable(summary) is None


# What two processes importing ArviZ 0.23 in the same instant do to each other on a day's first
# import: the second's rename of the shared temporary stamp file finds it gone.
LOSES_THE_RACE = """
import pathlib
rename = pathlib.Path.replace
def replace(self, target):
    if self.name == "daily_warning.tmp":
        raise FileNotFoundError(2, "No such file or directory", str(self))
    return rename(self, target)
pathlib.Path.replace = replace
from inference.estimators import diagnostics
import torch
diagnostics.pareto_k_and_ess(torch.randn(100, 3))  # the suite's first use of ArviZ imports it
"""


@pytest.mark.slow  # a fresh interpreter: about 5 s
def test_a_process_that_loses_arviz_daily_stamp_race_still_imports_the_suite(tmp_path):
    """On a day's first import, with a fresh cache, the suite imports ArviZ (at its first use)
    although ArviZ's own write of its stamp would fail as it does for the loser of the race; and
    the day is stamped."""
    environment = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", LOSES_THE_RACE], cwd=CONF.parent, env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "arviz" / "daily_warning").read_text() == datetime.date.today().isoformat()
    assert [p.name for p in (tmp_path / "arviz").iterdir()] == ["daily_warning"]  # no temporary left


def test_the_arviz_import_hides_its_announcement_and_no_other_warning(tmp_path, monkeypatch):
    """ArviZ's own once-a-day announcement, made for real in a fresh cache, is hidden; another
    warning raised alongside it is not, and outside the block the announcement shows."""
    import re
    import warnings

    from inference.estimators.arviz_import import announcement_hidden, az

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no stamp of today: ArviZ announces
    monkeypatch.setitem(vars(az), "re", re)  # the announcing function's import, which ArviZ deletes once it has run
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with announcement_hidden():
            az._warn_once_per_day()
            warnings.warn("a dependency's own deprecation", FutureWarning, stacklevel=1)
        (tmp_path / "arviz" / "daily_warning").unlink()
        az._warn_once_per_day()
    shown = [str(w.message).strip().splitlines()[0] for w in caught]
    assert shown == ["a dependency's own deprecation", "ArviZ is undergoing a major refactor to improve flexibility and extensibility while maintaining a user-friendly interface."]
