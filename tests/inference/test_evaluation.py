"""Bits per dimension: the conversion and the dequantization rule, on cases with exact answers."""

import math

import pytest

from conftest import SMALL_NETS, TINY, compose_config
from inference.evaluation import bits_per_dim
from inference.train import train


def test_a_fair_coin_per_pixel_is_one_bit():
    assert bits_per_dim(-784 * math.log(2), 784) == pytest.approx(1.0)


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_the_uniform_density_on_dequantized_data_is_log2_levels_bits(levels):
    # p(x) = 1 on [0, 1]^D: each of the L bins has probability 1/L, so log2 L bits per dimension
    assert bits_per_dim(0.0, 64, dequantized_levels=levels) == pytest.approx(math.log2(levels))


@pytest.mark.parametrize(
    "overrides, levels",
    [
        (["likelihood=discretized_logistic", "likelihood.num_bins=17", "data.binarize=none"], None),
        (["likelihood=beta", "data.binarize=none", "data.dequantize=true"], 17),
        (["data.binarize=fixed"], None),
    ],
    ids=["discretized_logistic", "beta_dequantized", "bernoulli"],
)
def test_runs_on_discrete_data_report_bits_per_dimension(tmp_path, overrides, levels):
    test = train(compose_config(*TINY, *SMALL_NETS, *overrides), tmp_path)["test"]
    assert test["bits_per_dim"] == pytest.approx(bits_per_dim(test["log_px"]["mean"], 64, levels))
    assert 0 < test["bits_per_dim"] < math.log2(17)


def test_density_on_raw_levels_reports_no_bits_per_dimension(tmp_path):
    test = train(compose_config(*TINY, *SMALL_NETS, "likelihood=gaussian", "data.binarize=none"), tmp_path)["test"]
    assert "bits_per_dim" not in test  # a density at grid points is not a probability
