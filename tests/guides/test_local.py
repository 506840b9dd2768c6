"""guide=local: the per-point table behind it, its fit against the closed form of the
linear-Gaussian model, and a run that trains and evaluates with it."""

import math

import pytest
import torch

from conftest import CORRELATED_W, SMALL_NETS, TINY, X_SCALE, best_diagonal_gap, compose_config
from guides import LocalNormal, PointTable
from inference.estimators import importance_sampling
from inference.estimators.gaps import fit_local
from inference.train import train
from models import LinearGaussian


def test_point_table_finds_every_points_row_in_any_batch():
    points = torch.randn(3000, 20)
    points[7] = points[2900]  # a duplicate point shares its row's output
    table = PointTable(points, torch.arange(3000.0)[:, None])
    for size in (1, 64, 3000):
        query = torch.randperm(3000)[:size]
        rows = table.rows(points[query])
        assert torch.equal(table.points[rows], points[query])
    exact = torch.randperm(2900)[:500]
    exact = exact[exact != 7]
    assert torch.equal(table(points[exact])[:, 0], exact.float())


def test_point_table_refuses_points_it_does_not_hold():
    table = PointTable(torch.randn(5, 3), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="has free parameters for 5 points only and was given others; add them"):
        table(torch.randn(2, 3))


def test_point_table_adds_each_new_distinct_point_once_and_saves_no_data():
    points = torch.randn(4, 3)
    table = PointTable(points, torch.zeros(4, 2))
    new = torch.randn(2, 3)
    table.add(torch.cat([points[:2], new, new[:1]]), torch.tensor([1.0, -1.0]))
    assert table.outputs.shape == (6, 2)
    assert torch.equal(table(new), torch.tensor([[1.0, -1.0]] * 2)) and torch.equal(table(points), torch.zeros(4, 2))
    assert set(table.state_dict()) == {"outputs"}  # the points are rebuilt from the data


def test_fitted_local_guide_reaches_the_best_diagonal_elbo():
    """With the model fixed, the local diagonal guide's ELBO is log p(x) − KL(q*‖p), where q*
    is the best diagonal Gaussian: a closed form for the linear-Gaussian model."""
    model = LinearGaussian.from_params(CORRELATED_W, torch.zeros(6), X_SCALE)
    x = model.sample(40)
    guide = LocalNormal(x, x_dim=6, z_dim=2)
    fit_local(model, guide, x)
    elbo = importance_sampling(model, guide, x, num_particles=2000).elbo
    expected = model.exact_log_px(x) - best_diagonal_gap()
    difference = elbo - expected
    # Monte Carlo error of the ELBO estimate, plus the fit's stopping tolerance
    assert abs(difference.mean().item()) < 3 * difference.std().item() / math.sqrt(len(x)) + 0.02


def test_the_local_fit_stops_on_what_the_fit_changed_not_on_noise():
    """Checks on common random numbers: a fit that cannot move (learning rate 0) sees the same
    ELBO at every check, so it decays at each check after the first and stops at the
    (decays + 2)-th. Fresh draws at each check would see rises of the estimate's noise (about
    0.1 nats here, against a tolerance of 1e-3) and go on."""
    model = LinearGaussian.from_params(CORRELATED_W, torch.zeros(6), X_SCALE)
    x = model.sample(40)
    guide = LocalNormal(x, x_dim=6, z_dim=2)
    assert fit_local(model, guide, x, lr=0.0, check_every=10, decays=3, max_steps=1000) == 50


@pytest.mark.slow  # a run that fits a local guide per split, with the gaps: about 8 s
def test_guide_local_trains_fits_each_split_and_has_no_amortization_gap(tmp_path):
    metrics = train(
        compose_config(
            *TINY, *SMALL_NETS, "guide=local", "guide.fit_steps=300", "data.binarize=fixed",
            "evaluation.gaps=true", "evaluation.gap_points=8", "evaluation.gap_particles=200",
        ),
        tmp_path,
    )
    assert all(row["valid_elbo"] is None for row in metrics["train"]["curve"])  # no parameters for them yet
    for split in ("valid", "test"):
        assert 0 < metrics[split]["local_fit_steps"] <= 300 and math.isfinite(metrics[split]["elbo"])
    # refitting the already fitted points from where they are gains nothing beyond noise
    amortization = metrics["test"]["gaps"]["amortization"]
    assert abs(amortization["mean"]) < 3 * amortization["stderr"] + 0.05


def test_guide_local_refuses_training_data_redrawn_every_epoch(tmp_path):
    with pytest.raises(ValueError, match="must stay fixed, but data=digits redraws it every epoch; set data.binarize=fixed"):
        train(compose_config(*TINY, "guide=local"), tmp_path)
    assert not any(tmp_path.iterdir())
