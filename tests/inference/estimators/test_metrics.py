"""Bits per dimension: the conversion and the dequantization rule, on cases with exact answers."""

import json
import math

import pytest
import torch

from conftest import SMALL_NETS, TINY, compose_config
from inference.estimators.metrics import bits_per_dim, mean_and_stderr
from inference.runs.rundir import write_metrics
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


def test_non_finite_values_give_no_mean_but_the_count_and_reason():
    summary = mean_and_stderr(torch.tensor([-1.0, -math.inf, float("nan"), -2.0]))
    assert summary["mean"] is None and summary["stderr"] is None and summary["non_finite"] == 2
    assert summary["reason"].startswith("1 NaN and 1 -inf of 4 values: -inf where every sample gave a point zero probability")


def test_metrics_json_writes_non_finite_numbers_as_null_and_lists_them(tmp_path):
    path = write_metrics(tmp_path, {"test": {"elbo": -3.0, "curve": [1.0, math.inf]}, "train": {"x": float("nan")}})
    written = json.loads(path.read_text())  # strict JSON: no NaN tokens
    assert written["test"] == {"elbo": -3.0, "curve": [1.0, None]} and written["train"] == {"x": None}
    assert written["non_finite"] == {"test.curve[1]": "inf (written as null)", "train.x": "nan (written as null)"}
