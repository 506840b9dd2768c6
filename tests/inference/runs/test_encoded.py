"""Latent features as data (data=encoded): another run's points through its trained guide, a
fresh draw of q(z|x) for each training point every epoch, the posterior mean for validation and
test points, the labels carried over; any model trains on them."""

import shutil

import pytest
import torch
from pyro import poutine

from conftest import SMALL_NETS, TINY, compose_config
from inference.runs import train
from inference.runs.build import instantiate, prepared
from inference.runs.encoded import encoded
from inference.training.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture
def m1(encoded_run):
    return encoded_run


def test_features_are_the_guides_posterior_with_a_fresh_draw_for_training(m1):
    features = encoded(str(m1), num_labeled=10, seed=1)
    assert features.x_dim == 4 and features.labels is not None and int(features.batch_extra("train", ("mask",))["mask"].sum()) == 10
    # valid and test: the posterior mean, which the average of many draws of the run's guide approaches
    cfg = compose_config(*TINY, *SMALL_NETS)
    data = instantiate(cfg.data)
    _, guide = prepared(cfg, data, torch.device("cpu"))
    guide.load_state_dict(load_checkpoint(m1)["guide"]), guide.eval()
    x = data.test[:5]
    with torch.no_grad():
        draws = torch.stack([poutine.trace(guide).get_trace(x).nodes["z"]["value"] for _ in range(2000)])
    error = (draws.mean(0) - features.test[:5]).abs() / (draws.std(0) / 2000**0.5)
    assert error.max() < 4.5  # within Monte Carlo error of the draws' mean
    # training points: each epoch a fresh draw around the mean, with the guide's sd
    epochs = torch.stack([features.train_epoch() for _ in range(400)])
    assert not torch.equal(epochs[0], epochs[1])
    assert ((epochs.mean(0) - features.train).abs() / (features.train_scale / 20)).max() < 5  # 400 draws: sd/20
    assert ((epochs.std(0) / features.train_scale) - 1).abs().max() < 0.25  # an sd from 400 draws: relative se 0.035


def test_a_semi_supervised_model_trains_on_the_features(m1, tmp_path, monkeypatch):
    monkeypatch.chdir(m1.parent)  # data.run relative to where the run starts, as users give it
    cfg = compose_config(*TINY, "data=encoded", f"data.run={m1.name}", "model=ss_vae", "guide=ss_vae", "objective=ss_elbo", "data.num_labeled=10",
                         "evaluation.supervised_only_steps=50")
    metrics = train(cfg, tmp_path)
    assert 0 <= metrics["test"]["accuracy"] <= 1 and metrics["test"]["log_px"]["n"] == 32
    assert cfg.likelihood._target_ == "models.Gaussian"  # the features are real-valued
    assert cfg.data.run == str(m1.resolve())  # recorded absolute: a re-evaluation finds it from any directory


def test_a_directory_without_a_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.run=.*holds no finished run \(.hydra/config.yaml and checkpoint.pt\)"):
        encoded(str(tmp_path))


def test_min_activity_drops_a_dimension_the_encoder_ignores(m1, tmp_path):
    # a copy of the run whose encoder gives dimension 1 the same posterior mean for every x: an
    # inactive unit by construction, the one data.min_activity must drop (and only it: the
    # others move with x)
    run = tmp_path / "m1"
    shutil.copytree(m1, run)
    state = load_checkpoint(run)
    last = [key for key in state["guide"] if key.startswith("encoder.") and key.endswith(".weight")][-1]
    state["guide"][last][1].zero_(), state["guide"][last.replace("weight", "bias")][1].zero_()  # z_loc is the output's first half
    save_checkpoint(run, state)
    every, active = encoded(str(run)), encoded(str(run), min_activity=0.0)
    assert every.x_dim == 4 and active.x_dim == 3
    for split in ("train", "valid", "test"):
        torch.testing.assert_close(getattr(active, split), getattr(every, split)[:, [0, 2, 3]])
    torch.testing.assert_close(active.train_scale, every.train_scale[:, [0, 2, 3]])
    with pytest.raises(ValueError, match=r"data.min_activity=1000000.0: no dimension of z is that active .* lower it"):
        encoded(str(run), min_activity=1e6)


def test_a_data_folder_given_relative_is_recorded_absolute_so_the_features_load_from_anywhere(mnist_root, tmp_path, monkeypatch):
    """data.root relative to the launch directory (as the default, data/mnist, is without
    $VAE_DATA) is recorded absolute: a run on the M1's features (data=encoded) reads the images
    from another directory. A run that recorded it relative, before, still resumes from where it
    started."""
    from omegaconf import OmegaConf

    monkeypatch.chdir(mnist_root.parent)
    run_dir = tmp_path / "m1"
    (run_dir / ".hydra").mkdir(parents=True)
    cfg = compose_config(*TINY, *SMALL_NETS, "data=mnist", "data.root=mnist", "data.num_valid=10")
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # as Hydra writes it before the run
    train(cfg, run_dir)
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").data.root == str(mnist_root)

    monkeypatch.chdir(run_dir)  # another directory, where "mnist" names nothing
    features = encoded(str(run_dir), num_labeled=10)
    assert features.train.shape == (30, 4) and features.test.shape == (10, 4)

    monkeypatch.chdir(mnist_root.parent)
    state = load_checkpoint(run_dir)
    state["config"]["data"]["root"] = "mnist"  # as a run recorded it before
    save_checkpoint(run_dir, state)
    resumed = train(compose_config(*TINY, *SMALL_NETS, "data=mnist", "data.root=mnist", "data.num_valid=10", "train.resume=true", "train.epochs=3"), run_dir)
    assert resumed["train"]["epochs"] == 3
