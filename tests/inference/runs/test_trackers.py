"""Experiment trackers: what a run sent to TensorBoard, MLflow and CSV, read back with each tool's
own reader, equals metrics.json and its training curve; a resumed run continues the same
tracker run, each epoch once."""

import csv
import json
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import SMALL_NETS, TINY, compose_config, run_command
from inference.runs import reevaluate, train
from inference.runs.trackers import CURVE_KEYS, flat_numbers
from inference.train import main as train_main

RUN = [*TINY, *SMALL_NETS, "train.checkpoint_every=1", "objective.warmup_epochs=2"]


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow store as the first run in a directory creates it (tables, no experiment of
    ours), made once: creating one takes about 1.5 s, copying it nothing."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def trackers(tmp_path, store: Path | None = None) -> list[str]:
    """The three trackers, MLflow's store in tmp_path: a copy of ``store`` where given, else
    created by the run itself."""
    if store is not None:
        shutil.copy(store, tmp_path / "mlflow.db")
    return ["logger=[tensorboard,mlflow,csv]", f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db"]


@pytest.mark.slow  # a new MLflow store, the figures and the trackers' first imports: about 5 s
def test_every_tracker_holds_the_curve_and_the_metrics_of_the_run(tmp_path):
    run_dir = tmp_path / "run"
    metrics = train(compose_config(*RUN, *trackers(tmp_path), "evaluation.figures=true"), run_dir)
    assert metrics == json.loads((run_dir / "metrics.json").read_text())
    curve, numbers = metrics["train"]["curve"], flat_numbers(metrics)
    assert [row["kl_weight"] for row in curve] == [0.0, 0.5]  # the warm-up, as the trackers get it
    assert "test.log_px.mean" in numbers and "train.curve.0.train_elbo" not in numbers

    with (run_dir / "csv" / "curve.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    for row, expected in zip(rows, curve):
        assert {key: float(row[key]) for key in CURVE_KEYS} == {key: expected[key] for key in CURVE_KEYS}
    with (run_dir / "csv" / "metrics.csv").open() as f:
        assert {row["name"]: float(row["value"]) for row in csv.DictReader(f)} == numbers

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    for key in CURVE_KEYS:
        logged = events.Scalars(f"curve/{key}")
        assert [e.step for e in logged] == [1, 2]
        assert [e.value for e in logged] == pytest.approx([row[key] for row in curve], rel=1e-6)  # float32 in the event file
    assert events.Scalars("test.log_px.mean")[0].value == pytest.approx(numbers["test.log_px.mean"], rel=1e-6)
    assert set(events.Tags()["scalars"]) >= {f"curve/{key}" for key in CURVE_KEYS} | set(numbers)
    figures = {path.stem for path in (run_dir / "plots").glob("*.png")}
    assert figures and set(events.Tags()["images"]) == {f"plots/{name}" for name in figures}

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = (run_dir / ".mlflow_run").read_text().strip()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert client.get_experiment(run.info.experiment_id).name == "runs"
    assert run.data.params["train.epochs"] == "2" and run.data.params["z_dim"] == "4"
    assert run.data.metrics == pytest.approx({**numbers, **{f"curve/{key}": curve[-1][key] for key in CURVE_KEYS}})
    history = client.get_metric_history(run_id, "curve/train_elbo")
    assert [(m.step, m.value) for m in history] == [(row["epoch"], row["train_elbo"]) for row in curve]
    assert {a.path for a in client.list_artifacts(run_id, "plots")} == {f"plots/{name}.png" for name in figures}


def test_a_resumed_run_continues_its_tracker_runs(tmp_path, empty_store):
    run_dir = tmp_path / "run"
    train(compose_config(*RUN, *trackers(tmp_path, empty_store)), run_dir)
    grown = train(compose_config(*RUN, *trackers(tmp_path), "train.epochs=3", "train.resume=true"), run_dir)
    epochs = [row["epoch"] for row in grown["train"]["curve"]]
    assert epochs == [1, 2, 3]

    with (run_dir / "csv" / "curve.csv").open() as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == epochs
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("curve/train_elbo")] == epochs
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (experiment,) = client.search_experiments(filter_string="name = 'runs'")
    (run,) = client.search_runs([experiment.experiment_id])  # the same MLflow run, not a second one
    assert [m.step for m in client.get_metric_history(run.info.run_id, "curve/train_elbo")] == epochs
    assert run.info.status == "FINISHED" and run.data.params["train.epochs"] == "2"  # MLflow keeps a parameter's first value


def test_a_reevaluation_sends_its_new_numbers_to_the_runs_trackers(tmp_path, empty_store):
    run_dir, cfg = tmp_path / "run", compose_config(*RUN, *trackers(tmp_path, empty_store))
    train(cfg, run_dir)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # what Hydra writes for inference.train
    metrics = reevaluate(run_dir, ["evaluation.num_particles=7", "evaluation.figures=false"])
    numbers = flat_numbers(metrics)
    assert numbers["test.log_px.num_particles"] == 7

    with (run_dir / "csv" / "metrics.csv").open() as f:
        assert {row["name"]: float(row["value"]) for row in csv.DictReader(f)} == numbers
    with (run_dir / "csv" / "curve.csv").open() as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1, 2]  # the curve kept, once
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert events.Scalars("test.log_px.num_particles")[-1].value == 7
    assert [e.step for e in events.Scalars("curve/train_elbo")] == [1, 2]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (experiment,) = client.search_experiments(filter_string="name = 'runs'")
    (run,) = client.search_runs([experiment.experiment_id])  # the run it trained in
    assert run.info.status == "FINISHED" and run.data.metrics["test.log_px.num_particles"] == 7
    assert run.data.metrics["test.log_px.mean"] == pytest.approx(numbers["test.log_px.mean"])
    assert [m.value for m in client.get_metric_history(run.info.run_id, "test.log_px.num_particles")] == [8, 7]


@pytest.mark.filterwarnings("ignore:Encountered NaN")  # Pyro says so before the guard does
def test_after_a_rollback_the_csv_and_tensorboard_curves_hold_each_epoch_once(tmp_path):
    """A NaN in epoch 2 rolls back to the checkpoint before epoch 1 (train.checkpoint_every=3),
    so epoch 1, already sent to the trackers, is trained and sent again."""
    faulty = ["train.epochs=4", "data.binarize=fixed", "decoder._target_=faults.FaultyMLP", "+decoder.fail_at=32"]
    rollback = ["train.on_nan=rollback", "train.checkpoint_every=3", "logger=[tensorboard,csv]"]
    metrics = train(compose_config(*RUN, *faulty, *rollback), tmp_path / "run")
    assert metrics["train"]["rollbacks"][0]["to_epoch"] == 0
    curve = metrics["train"]["curve"]
    with (tmp_path / "run" / "csv" / "curve.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]
    assert [float(row["train_elbo"]) for row in rows] == [row["train_elbo"] for row in curve]
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    logged = events.Scalars("curve/train_elbo")
    assert [e.step for e in logged] == [1, 2, 3, 4]
    assert [e.value for e in logged] == pytest.approx([row["train_elbo"] for row in curve], rel=1e-6)


def test_a_run_stopped_by_a_nan_is_marked_failed_in_mlflow(tmp_path, empty_store):
    faulty = ["train.epochs=4", "data.binarize=fixed", "decoder._target_=faults.FaultyMLP", "+decoder.fail_at=32"]  # NaN at step 29
    with pytest.raises(FloatingPointError):
        train(compose_config(*RUN, *faulty, *trackers(tmp_path, empty_store)), tmp_path / "run")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run((tmp_path / "run" / ".mlflow_run").read_text().strip())
    assert run.info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "curve/train_elbo")] == [1]  # the epoch it finished


def test_a_sweep_is_one_mlflow_experiment_with_a_run_per_job(tmp_path):
    sweep = tmp_path / "sweep"  # the command's sweep, its jobs one after another in this process (Hydra's basic launcher)
    code, printed = run_command(
        train_main, "--multirun", *TINY, *SMALL_NETS, "train.seed=0,1",
        "logger=mlflow", f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.sweep.dir={sweep}",
    )
    assert code == 0, printed
    assert "Warning" not in printed  # MLflow's store, read and written without warnings
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (experiment,) = client.search_experiments(filter_string=f"name = '{sweep}'")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["0", "1"]
    for run in runs:
        metrics = json.loads((sweep / run.info.run_name / "metrics.json").read_text())
        assert run.data.metrics["test.log_px.mean"] == pytest.approx(metrics["test"]["log_px"]["mean"])
        assert run.data.params["train.seed"] == run.info.run_name


def test_a_tracker_that_fails_mid_run_is_warned_about_once_and_the_run_finishes(tmp_path, empty_store, monkeypatch, caplog):
    """The MLflow store becomes unwritable after the run started: every later write of MLflow
    fails as SQLite says it then; the run warns once, the other trackers and metrics.json go on."""
    from mlflow.exceptions import MlflowException

    calls, log_batch = [], MlflowClient.log_batch

    def unwritable(self, run_id, *args, **kwargs):
        calls.append("metrics" if kwargs.get("metrics") else "params")
        if kwargs.get("metrics"):  # the parameters went in at the start; the curve's rows do not
            raise MlflowException("(sqlite3.OperationalError) attempt to write a readonly database")
        return log_batch(self, run_id, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", unwritable)
    run_dir = tmp_path / "run"
    with caplog.at_level("WARNING"):
        metrics = train(compose_config(*RUN, *trackers(tmp_path, empty_store), "logger=[mlflow,csv]"), run_dir)
    warned = [r.getMessage() for r in caplog.records if "stopped working" in r.getMessage()]
    assert warned == ["the MlflowTracker stopped working (MlflowException: (sqlite3.OperationalError) attempt to write a readonly database); the run goes on without it"]
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    with (run_dir / "csv" / "curve.csv").open() as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1, 2]  # the other tracker kept every epoch
    assert calls[-1] == "metrics" and calls.count("metrics") == 1  # the parameters, then the first epoch's row: nothing after the failure
