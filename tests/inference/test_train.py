"""train(cfg) end to end on tiny runs: the run directory, learning, determinism, bad input."""

import json
import math
import re
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from bench.estimator import handwritten_log_px
from conftest import SHORT_SEQUENCES, SMALL_NETS, TINY, assert_run_estimates_its_programs, assert_same_within_monte_carlo, compose_config, run_command, without_timings
from inference.data import digits
from inference.runs import build, train
from inference.runs.rundir import read_per_point
from inference.runs.summary import summary
from inference.train import main as train_main

RUN = [*TINY, *SMALL_NETS, "evaluation.prior_proposal=true"]  # a tiny run with small networks, evaluated as by default
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``(metrics, run_dir)`` of the run of ``RUN``, trained once for the tests that only read it
    or compare another run with it."""
    run_dir = tmp_path_factory.mktemp("tiny_run")
    return train(compose_config(*RUN), run_dir), run_dir


def test_run_writes_the_run_directory_contract(tiny_run):
    cfg = compose_config(*RUN)
    metrics, run_dir = tiny_run
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    for split in ("valid", "test"):
        result = metrics[split]
        assert result["log_px"].keys() >= {"mean", "stderr", "num_particles", "proposal", "n"}
        assert result["log_px"]["proposal"] == "guide" and result["log_px_prior"]["proposal"] == "prior"
        assert result["log_px"]["num_particles"] == 8 and result["log_px"]["n"] == 32
    assert metrics["train"]["steps"] == 2 * 20 and metrics["train"]["device"] == "cpu"
    assert [row["epoch"] for row in metrics["train"]["curve"]] == [1, 2]

    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    data = digits()
    model, guide = build(cfg, data)
    model.load_state_dict(state["model"]), guide.load_state_dict(state["guide"])
    assert state["optimizer"]["state"]  # Adam moments were saved

    # The numbers are the checkpoint's programs' on the test points, as hand-written PyTorch
    # estimates them with draws of its own: log p-hat at K = 8, and the ELBO (a K = 1 estimate,
    # unbiased for the ELBO as the run's mean of 8 log weights is).
    per_point = read_per_point(run_dir)
    x = data.test[:32]
    with torch.no_grad():
        hand_log_px = handwritten_log_px(model.eval(), guide.eval(), x, K=8, chunk_size=2**16)
        hand_elbo = torch.stack([handwritten_log_px(model, guide, x, K=1, chunk_size=2**16) for _ in range(8)]).mean(0)
    assert_same_within_monte_carlo(per_point["test.log_px"], hand_log_px, "log p-hat(x)")
    assert_same_within_monte_carlo(per_point["test.elbo"], hand_elbo, "ELBO")
    assert metrics["test"]["log_px"]["mean"] == pytest.approx(float(per_point["test.log_px"].mean()), rel=1e-6)
    assert metrics["test"]["elbo"] == pytest.approx(float(per_point["test.elbo"].mean()), rel=1e-6)


def test_the_prior_proposal_can_be_left_out(tiny_run, tmp_path):
    both, _ = tiny_run
    guide_only = train(compose_config(*RUN, "evaluation.prior_proposal=false"), tmp_path / "guide")
    assert "log_px_prior" not in guide_only["valid"] and "log_px_prior" not in guide_only["test"]
    # valid is evaluated first, from the same RNG state: the guide's estimate is the same
    assert guide_only["valid"]["log_px"] == both["valid"]["log_px"]
    lines = summary(guide_only, tmp_path / "guide")
    assert "guide proposal" in lines and "prior proposal" not in lines


def test_training_raises_the_elbo_on_digits(tmp_path):
    cfg = compose_config(*RUN, "train.epochs=30", "optim.lr=3e-3")
    curve = train(cfg, tmp_path)["train"]["curve"]
    first, last = curve[0], curve[-1]
    # Per-point ELBO on 8x8 binary digits starts near −44 nats (64·log 2 at initialization)
    # and a few hundred steps gain well over 5 nats; the noise of one epoch's mean is < 0.5.
    assert last["train_elbo"] > first["train_elbo"] + 5
    assert last["valid_elbo"] > first["valid_elbo"] + 5


def test_same_seed_gives_identical_metrics(tiny_run, tmp_path):
    cfg = compose_config(*RUN)
    first, _ = tiny_run
    second = train(cfg, tmp_path / "b")
    assert without_timings(first) == without_timings(second)
    other = train(compose_config(*RUN, "train.seed=1"), tmp_path / "c")
    assert without_timings(other) != without_timings(first)


def test_linear_gaussian_experiment_reports_the_exact_log_px(tmp_path):
    cfg = compose_config("experiment=linear_gaussian", "train.epochs=20", "train.progress=false", "evaluation.num_particles=500", "evaluation.splits=[test]",
                         "evaluation.prior_proposal=false")
    test = train(cfg, tmp_path)["test"]
    exact, estimate = test["log_px_exact"]["mean"], test["log_px"]["mean"]
    assert abs(estimate - exact) < 0.05
    assert test["elbo"] < exact


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated")
def test_jit_objective_trains_like_the_plain_one(tiny_run, tmp_path):
    jit = train(compose_config(*RUN, "objective=jit_trace_elbo"), tmp_path / "jit")
    plain, plain_dir = tiny_run
    # Same seed, but compilation draws random numbers, so the runs differ by Monte Carlo noise:
    # paired on the same test points, their log p-hat and ELBO agree within it, and both
    # learned alike, the validation ELBO rising from epoch 1 to 2 by the same amount
    a, b = read_per_point(tmp_path / "jit"), read_per_point(plain_dir)
    for key in ("test.log_px", "test.elbo"):
        assert_same_within_monte_carlo(a[key], b[key], key)
    rise = [run["train"]["curve"][1]["valid_elbo"] - run["train"]["curve"][0]["valid_elbo"] for run in (jit, plain)]
    assert min(rise) > 1 and abs(rise[0] - rise[1]) < 0.5 * max(rise), rise


def test_graph_objective_gives_the_lean_objectives_run(tiny_run, tmp_path):
    """Recording restores the random numbers it drew, and replay does the same operations, so
    the run is the plain one, to the bit."""
    graph = train(compose_config(*RUN, "objective=graph_trace_elbo"), tmp_path / "graph")
    plain, _ = tiny_run
    assert without_timings(graph) == without_timings(plain)


def test_a_run_with_pyros_checks_on_trains_and_evaluates_as_the_default(tiny_run, tmp_path):
    """train.validate=true: Pyro's argument checks on, and Trace_ELBO itself instead of its lean
    path, which draws the same numbers and computes the same loss and gradients, up to rounding."""
    checked = train(compose_config(*RUN, "train.validate=true"), tmp_path / "checked")
    plain, _ = tiny_run
    for a, b in zip(checked["train"]["curve"], plain["train"]["curve"]):
        assert a["train_elbo"] == pytest.approx(b["train_elbo"], rel=1e-4)
    assert checked["test"]["log_px"]["mean"] == pytest.approx(plain["test"]["log_px"]["mean"], rel=1e-4)


def test_gray_values_into_bernoulli_fail_before_training(tmp_path):
    cfg = compose_config(*RUN, "data.binarize=none")
    with pytest.raises(ValueError, match=r"data=digits, train split: Bernoulli likelihood needs binary data"):
        train(cfg, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    "override, message",
    [
        ("z_dim=0", "config key z_dim=0 is invalid: expected a positive integer"),
        ("train.epochs=0", "config key train.epochs=0 is invalid: expected a positive integer"),
        ("train.rollback_lr_factor=2", "train.rollback_lr_factor=2.0 is invalid: expected a number between 0 and 1"),
        ("z_dim=-3", "config key z_dim=-3 is invalid"),
        ("evaluation.num_particles=0", "evaluation.num_particles=0 is invalid"),
        ("optim.lr=-1", "optim.lr=-1 is invalid: expected a positive number"),
        ("train.device=tpu", "train.device='tpu' is invalid: expected auto, cpu, cuda or cuda:N"),
        ("decoder.hidden=[0]", "decoder.hidden=[0] is invalid"),
        ("train.resume=maybe", "train.resume='maybe' is invalid: expected true, false or auto"),
        ("train.cuda_graphs=maybe", "train.cuda_graphs='maybe' is invalid: expected true, false or auto"),
        ("train.finite_check=deferred optim.fused=false", "train.finite_check='deferred' is invalid: expected every_step or auto with this optimizer: deferred needs a fused one"),
    ],
)
def test_invalid_values_fail_at_start(tmp_path, override, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        train(compose_config(*RUN, *override.split()), tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=ten", "Value 'ten' of type 'str' could not be converted to Integer"),
        ("train.on_nan=retry", r"Invalid value 'retry', expected one of \[stop, rollback\]"),
        ("evaluation.ais_start=middle", r"Invalid value 'middle', expected one of \[prior, guide\]"),
        ("evaluation.forecast_filter=kalman", r"Invalid value 'kalman', expected one of \[particles, guide\]"),
        ("evaluation.prior_proposal=maybe", "Value 'maybe' is not a valid bool"),
        ("evaluation.max_points=some", "Value 'some' of type 'str' could not be converted to Integer"),
    ],
)
def test_wrong_types_and_choices_fail_at_composition(override, message):
    """inference/schema.py: Hydra refuses them while composing and names the key."""
    with pytest.raises(ConfigCompositionException, match=f"Error merging override {re.escape(override)}") as refused:
        compose_config(override)
    cause = str(refused.value.__cause__)
    assert re.search(message, cause) and f"full_key: {override.split('=')[0]}" in cause


def test_unknown_key_fails_at_composition():
    with pytest.raises(ConfigCompositionException, match="Could not override 'train.epoch'"):
        compose_config("train.epoch=3")


def test_a_missing_dataset_folder_names_vae_data(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"nowhere/mnist/train-images-idx3-ubyte.gz.*Set the environment variable VAE_DATA"):
        train(compose_config(*RUN, "data=mnist"), tmp_path / "run")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


# Only sizes: each dataset brings its own likelihood (pendulum_sequences also the sequence guide and
# transition; the model, listed after the data in conf/train.yaml, is named).
SMALLER = {
    "digits": [],
    "linear_gaussian": [],
    "pendulum": ["data.num_train=100", "data.num_valid=20", "data.num_test=20"],
    "pendulum_sequences": [*SHORT_SEQUENCES, "model=state_space"],
    "mnist": ["data.num_valid=10"],
    "fashion_mnist": ["data.num_valid=10"],
    "binarized_mnist": [],
    "caltech_silhouettes": [],
    "frey_face": ["data.num_valid=5", "data.num_test=5"],
    # a user's own data, named by data.path: the likelihood follows its values (likelihood=auto)
    "arrays": ["data.path={own_root}/d.npz"],
    "images": ["data.path={own_root}/images"],
    "table": ["data.path={own_root}/t.csv", "data.label_column=label"],
    # another run's latent features
    "encoded": ["data.run={encoded_run}"],
}


def test_every_dataset_config_is_listed():
    assert set(SMALLER) == {path.stem for path in (ROOT / "conf" / "data").glob("*.yaml")}


@pytest.mark.parametrize("dataset", sorted(SMALLER))
def test_a_dataset_named_alone_runs(dataset, tmp_path, monkeypatch, mnist_root, binarized_mnist_root, frey_root, caltech_root, own_root, encoded_run):
    """data=X with no likelihood or model named: each dataset brings what fits it, and the
    file-based ones find their files under $VAE_DATA/<folder>."""
    (tmp_path / "fashion_mnist").symlink_to(mnist_root)  # the same IDX format and file names
    caltech_root.rename(tmp_path / "caltech101_silhouettes")
    monkeypatch.setenv("VAE_DATA", str(tmp_path))
    cfg = compose_config(*TINY, f"data={dataset}", *(override.format(own_root=own_root, encoded_run=encoded_run) for override in SMALLER[dataset]))
    metrics = train(cfg, tmp_path / "run")
    assert metrics["train"]["epochs"] == 2 and all(math.isfinite(row["train_elbo"]) for row in metrics["train"]["curve"])
    assert_run_estimates_its_programs(cfg, tmp_path / "run")


@pytest.mark.cuda
def test_cuda_run(tmp_path):
    metrics = train(compose_config(*RUN, "train.device=cuda", "train.cuda_graphs=false"), tmp_path / "eager")
    assert metrics["train"]["device"].startswith("cuda") and metrics["train"]["cuda_graphs"] is False
    # the default run on CUDA captures its step, trace_elbo recorded for it: the eager run's log p-hat
    default = train(compose_config(*RUN, "train.device=cuda"), tmp_path / "default")
    a, b = default["test"]["log_px"], metrics["test"]["log_px"]
    assert default["train"]["cuda_graphs"] is True
    assert abs(a["mean"] - b["mean"]) < 3 * (a["stderr"] ** 2 + b["stderr"] ** 2) ** 0.5
    # its estimate replayed as CUDA graphs (evaluation.cuda_graphs, on by default) is the eager estimate's, point by point
    from inference.runs import reevaluate

    # K = 4096: groups of 4 points, so that most of the 32 are replayed (the first group of a shape runs eagerly)
    replayed, eager = (reevaluate(tmp_path / "default", ["evaluation.num_particles=4096", f"evaluation.cuda_graphs={c}"])["test"] for c in ("true", "false"))
    assert replayed["log_px"]["mean"] == pytest.approx(eager["log_px"]["mean"], abs=1e-4) and replayed["elbo"] == pytest.approx(eager["elbo"], abs=1e-4)
    # the recorded objective on CUDA (CUDA kernels need not be bitwise deterministic: Monte Carlo agreement)
    graph = train(compose_config(*RUN, "train.device=cuda", "objective=graph_trace_elbo", "train.cuda_graphs=false"), tmp_path / "graph")
    a, b = graph["test"]["log_px"], metrics["test"]["log_px"]
    assert graph["train"]["device"].startswith("cuda")
    assert abs(a["mean"] - b["mean"]) < 3 * (a["stderr"] ** 2 + b["stderr"] ** 2) ** 0.5
    # the recorded step captured as CUDA graphs, with a KL warm-up (a new weight, a new capture, each epoch)
    captured = train(compose_config(*RUN, "train.device=cuda", "objective=graph_trace_elbo", "train.cuda_graphs=true", "objective.warmup_epochs=2"), tmp_path / "captured")
    warmed = train(compose_config(*RUN, "train.device=cuda", "objective=graph_trace_elbo", "train.cuda_graphs=false", "objective.warmup_epochs=2"), tmp_path / "warmed")
    a, b = captured["test"]["log_px"], warmed["test"]["log_px"]
    assert abs(a["mean"] - b["mean"]) < 3 * (a["stderr"] ** 2 + b["stderr"] ** 2) ** 0.5
    assert [row["lr"] for row in captured["train"]["curve"]] == pytest.approx([row["lr"] for row in warmed["train"]["curve"]])  # a float32 tensor there


@pytest.mark.cuda
def test_a_captured_kl_warm_up_longer_than_the_graphs_kept(tmp_path):
    """A KL weight a graph each epoch, more epochs of warm-up than graphs are kept (MAX_GRAPHS):
    old graphs are dropped while new ones are captured, and the run agrees with the uncaptured one."""
    from inference.training.capture import MAX_GRAPHS

    warmup = [f"objective.warmup_epochs={MAX_GRAPHS + 2}", f"train.epochs={MAX_GRAPHS + 3}"]
    runs = [train(compose_config(*RUN, "train.device=cuda", "objective=graph_trace_elbo", f"train.cuda_graphs={c}", *warmup), tmp_path / c) for c in ("true", "false")]
    a, b = (run["test"]["log_px"] for run in runs)
    assert all(row["train_elbo"] == row["train_elbo"] for run in runs for row in run["train"]["curve"])
    assert abs(a["mean"] - b["mean"]) < 3 * (a["stderr"] ** 2 + b["stderr"] ** 2) ** 0.5


@pytest.mark.slow  # a run of the command in a subprocess
def test_the_command_refuses_a_typo_and_a_bad_value_leaving_no_directory(tmp_path):
    """The command in this process: a key that is not in the config fails at composition, a value
    that only the checks can reject fails at start, its message once and no traceback; neither
    leaves a run directory behind."""
    cases = [("trian.epochs=3", "Could not override 'trian.epochs'"), ("train.epochs=0", "config key train.epochs=0 is invalid: expected a positive integer")]
    if not torch.cuda.is_available():
        cases.append(("train.device=cuda", "train.device=cuda but no CUDA device is available; use train.device=auto or train.device=cpu"))
    for override, message in cases:
        run_dir = tmp_path / override.split("=")[0]
        code, printed = run_command(train_main, *RUN, f"hydra.run.dir={run_dir}", override)
        assert code != 0 and printed.count(message) == 1, printed
        assert "Traceback" not in printed
        assert not run_dir.exists()


def test_an_experiment_file_of_ones_own_without_its_package_line_is_refused(tmp_path):
    """Without `# @package _global_` an experiment file's keys land under experiment., where
    nothing reads them: refused, naming the file and the line, with no run directory left; with
    the line, the same file sets what it says."""
    (tmp_path / "my_conf" / "experiment").mkdir(parents=True)
    experiment = tmp_path / "my_conf" / "experiment" / "mine.yaml"
    experiment.write_text("train:\n  epochs: 1\n")
    run_dir = tmp_path / "refused"
    code, printed = run_command(train_main, "--config-dir", str(tmp_path / "my_conf"), *RUN, "experiment=mine", f"hydra.run.dir={run_dir}")
    assert code != 0 and "experiment/mine.yaml puts its keys under experiment. (experiment.train), where they change nothing: " \
        "make `# @package _global_` its first line" in printed, printed
    assert not run_dir.exists()
    experiment.write_text("# @package _global_\ntrian:\n  epochs: 1\n")  # a misspelled key, which struct mode lets through
    code, printed = run_command(train_main, "--config-dir", str(tmp_path / "my_conf"), *RUN, "experiment=mine", f"hydra.run.dir={run_dir}")
    assert code != 0 and "the config has top-level keys the suite does not read: trian (did you mean train?); they change nothing" in printed, printed
    assert not run_dir.exists()
    experiment.write_text("# @package _global_\ntrain:\n  epochs: 1\n")
    mine = [o for o in RUN if not o.startswith("train.epochs=")]  # the file's epochs, not the tiny run's
    code, printed = run_command(train_main, "--config-dir", str(tmp_path / "my_conf"), *mine, "experiment=mine", f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 0, printed
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]["epochs"] == 1


def test_a_likelihood_that_does_not_fit_the_data_names_the_transform(tmp_path, caltech_root):
    cfg = compose_config(*RUN, "data=caltech_silhouettes", f"data.root={caltech_root}", "likelihood=beta")
    with pytest.raises(ValueError, match=r"data=caltech_silhouettes, train split: Beta likelihood needs data strictly inside \(0, 1\).*data.dequantize=true"):
        train(cfg, tmp_path)


def test_pendulum_run_reports_the_probe(tmp_path):
    cfg = compose_config(*TINY, "experiment=pendulum", "data.num_train=200", "data.num_valid=50", "data.num_test=100", "train.epochs=2")
    probe = train(cfg, tmp_path)["test"]["probe"]
    assert set(probe["r2"]) == {"cos_angle", "sin_angle", "angular_velocity"}
    assert probe["r2_mean"] == pytest.approx(sum(probe["r2"].values()) / 3)


def test_time_budget_stops_between_epochs(tmp_path):
    train_summary = train(compose_config(*RUN, "train.epochs=1000", "train.max_seconds=0.5"), tmp_path)["train"]
    assert 1 <= train_summary["epochs"] < 1000
    assert train_summary["steps"] == 20 * train_summary["epochs"]  # whole epochs only
    assert train_summary["seconds"] >= 0.5 > sum(row["seconds"] for row in train_summary["curve"][:-1])
