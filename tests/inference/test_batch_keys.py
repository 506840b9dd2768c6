"""Batch keys: a program that takes per-point keyword arguments besides x (class labels y) gets
them sliced with x by the estimators, by training and by the run layer. The program is
linear-Gaussian in z given y, with the exact posterior as guide, so every number it produces has
a closed form that depends on each point's own label: a label passed with the wrong point, or not
at all, shows as a wrong value, not as a tolerance."""

import math

import pyro
import pytest
import torch

from conftest import TINY, assert_run_estimates_its_programs, compose_config, without_timings
from inference.data import Dataset
from inference.estimators import importance_sampling
from inference.runs import instantiate, train
from inference.runs.build import batch_keys
from inference.training import adopt_store_parameters, fit, parameters_of
from models.program import ProgramModule
from user_programs import ClassConditional, PyroExampleVAE

CLASSES, D = 3, 4


def _labelled(n: int, seed: int = 0):
    """Points x = μ_y + noise around three well-separated class means, and their labels."""
    generator = torch.Generator().manual_seed(seed)
    means = 3.0 * torch.randn(CLASSES, D, generator=generator)
    y = torch.randint(CLASSES, (n,), generator=generator)
    return means[y] + torch.randn(n, D, generator=generator), y, means


def _programs(program: ClassConditional):
    model = ProgramModule(program.model, owner=program, batch_keys=("y",))
    return model, ProgramModule(program.guide, owner=program, batch_keys=("y",))


@pytest.mark.parametrize("chunk_size", [48, 10_000])  # three points a pass with K = 16, or all at once
def test_importance_sampling_slices_the_labels_with_the_points(chunk_size):
    program = ClassConditional(D, CLASSES)
    x, y, means = _labelled(20)
    pyro.clear_param_store()
    pyro.param("class_means", means)
    exact = program.exact_log_px(x, y, means)
    assert (exact - program.exact_log_px(x, (y + 1) % CLASSES, means)).abs().min() > 1.0  # each point's label matters
    estimate = importance_sampling(program.model, program.guide, x, 16, chunk_size, seed=3, extra={"y": y})
    # the exact posterior as proposal: every weight is p(x | y), whatever the draws
    assert torch.allclose(estimate.log_px, exact, atol=1e-4) and torch.allclose(estimate.elbo, exact, atol=1e-4)


def test_the_prior_proposal_takes_the_labels_too():
    program = ClassConditional(D, CLASSES)
    x, y, means = _labelled(20)
    pyro.clear_param_store()
    pyro.param("class_means", means)
    exact = program.exact_log_px(x, y, means)
    whole, passes = (importance_sampling(program.model, None, x, 4096, size, seed=4, extra={"y": y}, diagnose=True) for size in (10**6, 4096))
    assert torch.allclose(whole.log_px, passes.log_px, atol=1e-4)  # seeded: the same for any pass size
    # log p̂(x) has a standard error of about 1/√ESS per point (and a bias of −1/(2 ESS)); five of them
    assert ((whole.log_px - exact).abs() * whole.ess.sqrt()).max() < 5.0


def test_training_fits_each_class_its_own_mean():
    program = ClassConditional(D, CLASSES)
    x, y, _ = _labelled(600)
    data = Dataset("labelled", x[:400], x[400:500], x[500:], image_shape=(D,), labels={"train": y[:400], "valid": y[400:500], "test": y[500:]})
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model, guide = _programs(program)
    adopt_store_parameters(model, guide, x[:2], {"y": y[:2]})
    progress = fit(model, guide, data, torch.optim.Adam(parameters_of(model, guide), lr=0.3), epochs=200, batch_size=400, progress=False)
    # the maximum-likelihood class means are the classes' averages of x. With the exact posterior
    # as guide and the whole training set a batch, the ELBO's gradient is exact (it moved 3e-3 or
    # less from them in 200 steps); a label passed with another point would leave a class several
    # units off
    averages = torch.stack([x[:400][y[:400] == c].mean(0) for c in range(CLASSES)])
    assert torch.allclose(pyro.param("class_means").detach(), averages, atol=0.01)
    # the validation ELBO is log p(x | y) of the valid points with their own labels
    exact = program.exact_log_px(x[400:500], y[400:500], pyro.param("class_means").detach()).mean().item()
    assert math.isclose(progress["curve"][-1]["valid_elbo"], exact, abs_tol=1e-3)


# digits dequantized for the Gaussian program
CLASS_CONDITIONAL = [*TINY, "model=program", "guide=program", "model.program=user_programs.ClassConditional", "model.batch_keys=[y]"]
DIGITS = ["data=digits", "data.binarize=none", "data.dequantize=true"]


def test_a_run_passes_each_split_its_labels_and_resumes(tmp_path):
    options = [*CLASS_CONDITIONAL, *DIGITS]
    # the methods that run the programs on x alone, asked for, are refused before training
    for switch, method in (("evaluation.ais=true", "ais"), ("evaluation.posterior_points=1", "posterior"), ("evaluation.gaps=true", "gaps")):
        with pytest.raises(ValueError, match=rf"evaluation.methods.{method} cannot run here: .*these take y per data point too; turn it off with evaluation\."):
            train(compose_config(*options, switch), tmp_path / method)
        assert not (tmp_path / method / "checkpoint.pt").exists()
    pyro.clear_param_store()
    metrics = train(compose_config(*options), tmp_path / "whole")
    means = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["model"]["store_params.class_means"]
    digits = instantiate(compose_config(*options).data)
    program = ClassConditional(digits.x_dim)
    for split in ("valid", "test"):
        exact = program.exact_log_px(digits.split(split)[:32], digits.labels[split][:32], means).mean().item()
        assert math.isclose(metrics[split]["log_px"]["mean"], exact, abs_tol=1e-3), split
        assert math.isclose(metrics[split]["elbo"], exact, abs_tol=1e-3), split

    pyro.clear_param_store()
    train(compose_config(*options, "train.epochs=1"), tmp_path / "resumed")
    pyro.clear_param_store()
    resumed = train(compose_config(*options, "train.resume=true"), tmp_path / "resumed")
    assert without_timings(resumed) == without_timings(metrics)


def test_the_readme_conditional_vae_trains_and_draws_the_figures_it_can(tmp_path):
    options = [*CLASS_CONDITIONAL, "model.program=user_programs.ConditionalVAE", "data=digits", "data.binarize=fixed", "evaluation.figures=true"]
    cfg = compose_config(*options)
    train(cfg, tmp_path)
    assert_run_estimates_its_programs(cfg, tmp_path)  # log p̂(x | y): each point with its own label
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["log_px_against_k.png", "training_curve.png"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data=linear_gaussian"], r"the programs take 'y' per data point \(batch keys\), but data=linear_gaussian does not provide it: it provides x alone"),
        ([*DIGITS, "model.batch_keys=[y,mask]"], r"model\(x, y\) cannot be called as model\(x, y=\.\.\., mask=\.\.\.\)"),
        ([*DIGITS, "model.program=user_programs.PyroExampleVAE"], r"model\(x\) cannot be called as model\(x, y=\.\.\.\)"),
        ([*DIGITS, "objective=jit_trace_elbo"], r"objective=jit_trace_elbo takes tensors as positional arguments only, but the programs take y by name"),
    ],
)
def test_batch_keys_the_data_or_the_program_lack_are_refused_at_start(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train(compose_config(*CLASS_CONDITIONAL, *overrides), tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_a_guide_must_take_the_keys_its_model_takes():
    program, vae = ClassConditional(D, CLASSES), PyroExampleVAE(D, 2)
    model = ProgramModule(program.model, owner=program, batch_keys=("y",))
    with pytest.raises(ValueError, match=r"the model takes x and y per data point, but the guide takes x alone; .* same arguments"):
        batch_keys(model, ProgramModule(vae.guide, owner=vae))
    assert batch_keys(*_programs(program)) == ("y",)


def test_a_dataset_checks_its_batch_keys():
    x, y, _ = _labelled(10)
    with pytest.raises(ValueError, match=r"batch key 'mask' of the train split has 9 points, the split 4"):
        Dataset("labelled", x[:4], x[4:6], x[6:], image_shape=(D,), extra={"train": {"mask": torch.ones(9, dtype=torch.bool)}})
    data = Dataset("labelled", x[:4], x[4:6], x[6:], image_shape=(D,), labels={"train": y[:4], "valid": y[4:6], "test": y[6:]})
    assert torch.equal(data.batch_extra("test", ("y",))["y"], y[6:]) and data.batch_extra("test", ("y",))["y"].dtype == torch.long
    assert data.batch_extra("test", ()) == {}
    with pytest.raises(ValueError, match=r"take 'mask' per data point \(batch keys\), but data=labelled does not provide it: it provides y;"):
        data.batch_extra("train", ("y", "mask"))
