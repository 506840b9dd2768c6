"""The lines a user reads at the end of a run or a re-evaluation: they say what happened."""

from pathlib import Path

from inference.runs.summary import summary


def estimate(mean: float, stderr: float) -> dict:
    return {"mean": mean, "stderr": stderr, "n": 8}


def test_a_reevaluation_says_it_evaluated_and_bdmc_bounds_that_cross_say_whether_that_is_noise():
    bdmc = {"points": 8, "lower": estimate(-21.707, 0.30), "upper": estimate(-21.727, 0.31), "width": estimate(-0.020, 0.015), "log_px_importance": estimate(-21.8, 0.3)}
    test = {"elbo": -22.0, "log_px": {**estimate(-21.5, 0.3), "num_particles": 10}, "bdmc": bdmc}
    lines = summary({"test": test}, Path("run"), evaluated_in=3.25).splitlines()
    assert lines[0] == "evaluated the run's checkpoint in 3.2 s" and not any(line.startswith("trained") for line in lines)
    assert "BDMC on 8 simulated points: -21.707 ± 0.300 ≤ log p(x) ≤ -21.727 ± 0.310 (width -0.020 ± 0.015;" in "\n".join(lines)
    assert "the bounds cross by 0.020, within twice its standard error" in "\n".join(lines)
    bdmc["width"] = estimate(-0.5, 0.1)
    assert "beyond twice its standard error: more AIS steps or chains" in summary({"test": test}, Path("run"), evaluated_in=1.0)


def test_nuts_gets_its_line():
    posterior = {"points": 2, "nuts_r_hat_max": 1.004, "nuts_ess_bulk_min": 812.0, "mean_shift_in_sd": 0.05, "scale_ratio": 0.93}
    test = {"elbo": -22.0, "log_px": {**estimate(-21.5, 0.3), "num_particles": 10}, "posterior": posterior}
    train = {"steps": 10, "seconds": 1.0, "device": "cpu"}
    assert "NUTS on 2 test points: R̂ at most 1.004, bulk ESS at least 812; q(z|x) against it: mean shift 0.050 sd, scale ratio 0.930" in summary(
        {"train": train, "test": test}, Path("run")
    )


def test_a_test_split_with_only_a_method_of_its_own_is_summarized():
    # evaluation.splits=[valid] with an added method whose splits stay [test]: test holds that method alone
    test = {"active_units": {"active": 11, "count": 50, "variances": [1.0] * 11 + [0.0] * 39}}
    train = {"steps": 10, "seconds": 1.0, "device": "cpu"}
    text = summary({"train": train, "valid": {"elbo": -99.0}, "test": test}, Path("run"))
    assert "test active_units: active 11, count 50" in text and "ELBO" not in text
