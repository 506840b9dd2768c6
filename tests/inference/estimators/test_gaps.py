"""The inference-gap decomposition against the closed forms of the linear-Gaussian model."""

from functools import partial

import pyro
import pytest
import torch

from guides import AmortizedFullRank, AmortizedNormal
from conftest import CORRELATED_W as W, X_SCALE, best_diagonal_gap
from inference.data import Dataset
from inference.estimators.gaps import inference_gaps, localized
from inference.training import fit
from models import MLP, LinearGaussian

@pytest.fixture(scope="module")
def fitted():
    pyro.set_rng_seed(0)
    model = LinearGaussian.from_params(W, torch.zeros(6), X_SCALE)
    x, test = model.sample(2000), model.sample(30)
    data = Dataset("lg", x, x[:0], test, image_shape=(6,))
    guides = {}
    for name, family in [("diagonal", AmortizedNormal), ("full_rank", AmortizedFullRank)]:
        guide = family(partial(MLP, hidden=[32]), x_dim=6, z_dim=2)
        fit(model, guide, data, torch.optim.Adam(guide.parameters(), lr=1e-2), epochs=30, batch_size=100, progress=False)
        guides[name] = inference_gaps(model, guide, test, num_particles=1000, flow=name == "diagonal")
    return model, test, guides


@pytest.mark.slow  # the fixture fits two guides and decomposes their gaps at K = 1000: about 13 s
def test_full_rank_guide_has_no_approximation_gap(fitted):
    model, test, gaps = fitted
    approximation = gaps["full_rank"]["approximation"]
    # zero up to Monte Carlo error and the local fit's stopping tolerance (1e-3 nats per check)
    assert abs(approximation["mean"]) < 3 * approximation["stderr"] + 5e-3
    assert abs(gaps["full_rank"]["log_px"]["mean"] - model.exact_log_px(test).mean().item()) < 0.01


@pytest.mark.slow  # the fixture fits two guides and decomposes their gaps at K = 1000: about 13 s
def test_diagonal_guide_gap_is_the_kl_of_the_best_diagonal_approximation(fitted):
    _, _, gaps = fitted
    expected = best_diagonal_gap()  # about 1.0 nats for this W
    approximation = gaps["diagonal"]["approximation"]
    assert expected > 0.5
    assert abs(approximation["mean"] - expected) < 3 * approximation["stderr"] + 0.02


@pytest.mark.slow  # the fixture fits two guides and decomposes their gaps at K = 1000: about 13 s
def test_local_guides_are_at_least_as_good_as_amortized(fitted):
    _, _, gaps = fitted
    for g in gaps.values():
        amortization = g["amortization"]
        assert amortization["mean"] > -3 * amortization["stderr"]
        assert g["inference"]["mean"] == pytest.approx(g["approximation"]["mean"] + amortization["mean"], abs=1e-5)
    # a flexible local flow closes most of the diagonal family's approximation gap
    diagonal = fitted[2]["diagonal"]
    assert diagonal["local_flow_elbo"]["mean"] > diagonal["local_elbo"]["mean"] + 0.5


def test_a_local_guide_serves_only_its_points():
    guide = AmortizedNormal(partial(MLP, hidden=[4]), x_dim=3, z_dim=1)
    points = torch.randn(5, 3)
    local = localized(guide, points)
    assert torch.allclose(local.encoder(points[[3, 1]]), guide.encoder(points[[3, 1]]))
    with pytest.raises(ValueError, match="has free parameters for 5 points only"):
        local.encoder(torch.randn(2, 3))
