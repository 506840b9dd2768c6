"""A user's own Pyro program through Hydra (model=program guide=program): trained, evaluated,
checkpointed and resumed like the shipped ones; its pyro.param tensors trained; bad programs
refused at start, naming what is wrong."""

import math
from pathlib import Path

import pyro
import pytest
import torch

from conftest import TINY, assert_run_estimates_its_programs, compose_config, run_command, without_timings
from inference.runs import train
from inference.train import main as train_main

ROOT = Path(__file__).resolve().parents[3]
PROGRAM = [*TINY, "model=program", "guide=program"]
SPLIT = [*PROGRAM, "data=linear_gaussian", "model.program=user_programs.split_latent_model", "guide.program=user_programs.split_latent_guide"]


def test_a_pyro_example_vae_trains_and_evaluates(tmp_path):
    cfg = compose_config(*PROGRAM, "model.program=user_programs.PyroExampleVAE", "data.binarize=fixed", "train.epochs=4")
    metrics = train(cfg, tmp_path)
    curve = metrics["train"]["curve"]
    assert all(math.isfinite(row["train_elbo"]) for row in curve)
    assert curve[-1]["train_elbo"] > curve[0]["train_elbo"]  # 8x8 binary digits start near −44 nats and learn fast
    assert_run_estimates_its_programs(cfg, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert any(key.startswith("owner.decoder.") for key in state["model"])  # the networks are the model's


def test_pyro_params_are_trained_checkpointed_and_resumed(tmp_path):
    pyro.clear_param_store()
    whole = train(compose_config(*SPLIT, "train.epochs=4"), tmp_path / "whole")
    noise = pyro.param("noise").item()
    # it starts at 1.0; Adam's 128 steps of at most lr = 1e-3 each on log σ move it by up to 0.14
    assert abs(math.log(noise)) > 0.05, noise
    state = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    assert math.isclose(state["model"]["store_params.noise"].exp().item(), noise, rel_tol=1e-6)  # unconstrained: log σ
    assert {"store_params.guide_weights", "store_params.guide_scale"} <= state["guide"].keys()

    train(compose_config(*SPLIT, "train.epochs=2"), tmp_path / "resumed")
    pyro.clear_param_store()  # a new process: the store holds nothing of the first half
    resumed = train(compose_config(*SPLIT, "train.epochs=4", "train.resume=true"), tmp_path / "resumed")
    assert without_timings(resumed) == without_timings(whole)


def test_a_plate_named_otherwise_and_a_discrete_latent(tmp_path):
    renamed = train(compose_config(*PROGRAM, "model.program=user_programs.PlateNamedBatch", "model.data_plate=batch", "data.binarize=fixed"), tmp_path / "renamed")
    assert math.isfinite(renamed["test"]["log_px"]["mean"])

    # the discrete latent summed over exactly in training (objective=trace_enum_elbo)
    discrete = ("model.program=user_programs.DiscreteMixture", "objective=trace_enum_elbo", "data.binarize=fixed")
    # AIS and NUTS move z as one real vector, the gaps replace an encoder: asked for, each is refused before training
    reasons = {"ais": "the model has a discrete latent site 'component'", "posterior": "the model has a discrete latent site 'component'", "gaps": "it needs a guide whose encoder"}
    for switch, method in (("evaluation.ais=true", "ais"), ("evaluation.posterior_points=1", "posterior"), ("evaluation.gaps=true", "gaps")):
        with pytest.raises(ValueError, match=rf"evaluation.methods.{method} cannot run here: .*{reasons[method]}.*; turn it off with evaluation\."):
            train(compose_config(*PROGRAM, *discrete, switch), tmp_path / method)
        assert not (tmp_path / method / "checkpoint.pt").exists()
    config = compose_config(*PROGRAM, *discrete, "train.epochs=4")
    metrics = train(config, tmp_path / "discrete")
    curve = metrics["train"]["curve"]
    assert curve[-1]["train_elbo"] > curve[0]["train_elbo"]
    assert_run_estimates_its_programs(config, tmp_path / "discrete")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.program=user_programs.PyroExampleVAE", "prior=vamp"], r"the model is a whole Pyro program \(model=program\), so prior=\.\.\. does not apply"),
        (["model.program=no_such_package.vae"], r"model.program=no_such_package.vae does not import: no module 'no_such_package'"),
        (["model.program=user_programs.no_such_vae"], r"model.program=user_programs.no_such_vae: user_programs has no no_such_vae"),
        (["model.program=user_programs.two_arguments", "guide.program=user_programs.split_latent_guide"], r"model\(x, y\) cannot be called as model\(x\)"),
        (["model.program=user_programs.not_a_program"], r"is a int, not a Pyro program"),
        (["model.program=user_programs.split_latent_model"], r"guide=program needs guide.program=PKG.MODULE.NAME"),
        (["model.program=user_programs.PyroExampleVAE", "guide=normal"], r"guide=\w+ is built around an encoder network.*use guide=program"),
        (
            ["model.program=user_programs.split_latent_model", "guide.program=user_programs.PyroExampleVAE", "data=linear_gaussian"],
            r"the guide samples the sites \['latent'\] but the model's latent sites are \['a', 'b'\]",
        ),
        (["model.program=user_programs.PlateNamedBatch"], r"site 'latent' is not inside pyro.plate\('data', \.\.\.\).*model.data_plate"),
    ],
)
def test_bad_programs_are_refused_at_start(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train(compose_config(*PROGRAM, *overrides), tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()


COMMAND = [*PROGRAM, "model.program=user_programs.PyroExampleVAE", "data.binarize=fixed", "evaluation.figures=true"]


def test_the_command_refuses_a_bad_program_leaving_no_directory(tmp_path):
    code, printed = run_command(train_main, *COMMAND, "prior=vamp", f"hydra.run.dir={tmp_path / 'bad'}")
    assert code != 0 and "prior=... does not apply" in printed
    assert not (tmp_path / "bad").exists()
