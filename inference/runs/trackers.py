"""Experiment trackers (``logger=tensorboard|mlflow|csv``, several at once as a list): each gets
the run's config as parameters, the training curve as it is written (one row per epoch: train
and valid ELBO, learning rate, KL weight, seconds), every number of ``metrics.json`` under its
dotted path (``test.log_px.mean``), and the figures.

A resumed run continues its tracker run: the CSV file and TensorBoard drop what was logged after
the checkpoint the run resumes from (the epochs it trains again), and MLflow reopens the run whose
id the run directory keeps (``.mlflow_run``); MLflow cannot delete logged values, so there an
epoch trained again after a resume appears twice in the metric's history.
"""

import csv
import json
import logging
import math
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from ..training.callbacks import Callback

__all__ = ["CURVE_KEYS", "CsvTracker", "MlflowTracker", "TensorBoardTracker", "Trackers", "flat_numbers"]

log = logging.getLogger(__name__)

# The columns of a training-curve row that trackers receive, under these names (curve/<key> in
# TensorBoard and MLflow), indexed by the epoch.
CURVE_KEYS = ("train_elbo", "valid_elbo", "lr", "kl_weight", "seconds")


def flat_numbers(tree, prefix: str = "") -> dict[str, float]:
    """The numbers of ``metrics.json`` by dotted path (list items by index: ``test.denoise.psnr_input.0``),
    leaving out the training curve, which trackers get epoch by epoch, and non-finite values."""
    if isinstance(tree, dict):
        return {
            k: v for key, value in tree.items() if f"{prefix}{key}" != "train.curve"
            for k, v in flat_numbers(value, f"{prefix}{key}.").items()
        }
    if isinstance(tree, list):
        return {k: v for i, value in enumerate(tree) for k, v in flat_numbers(value, f"{prefix}{i}.").items()}
    if isinstance(tree, (int, float)) and not isinstance(tree, bool) and math.isfinite(tree):
        return {prefix[:-1]: float(tree)}
    return {}


def _flat_config(config: dict) -> dict[str, str]:
    """The config as parameters: dotted keys, values as text (what every tracker accepts)."""
    if not isinstance(config, dict):
        return {}
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update({f"{key}.{k}": v for k, v in _flat_config(value).items()})
        else:
            flat[key] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return flat


def _figures(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "plots").glob("*.png"))


class CsvTracker:
    """``curve.csv`` (a row per epoch), ``metrics.csv`` (name, value) and ``params.csv`` (name,
    value) in ``subdir`` of the run directory; the figures are already in ``plots/``."""

    def __init__(self, subdir: str = "csv"):
        self.subdir = subdir

    def start(self, run_dir: Path, config: dict, resumed_at: int | None, sweep: str | None) -> None:
        self.dir = run_dir / self.subdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.curve = self.dir / "curve.csv"
        self._keep_until(resumed_at or 0)  # a resume trains the epochs after its checkpoint again
        self._write_pairs(self.dir / "params.csv", _flat_config(config))

    def _keep_until(self, epoch: int) -> None:
        """Rewrite the curve with its rows up to ``epoch`` only."""
        kept = []
        if epoch and self.curve.exists():
            with self.curve.open(newline="") as f:
                kept = [row for row in csv.DictReader(f) if int(row["epoch"]) <= epoch]
        with self.curve.open("w", newline="") as f:
            writer = csv.DictWriter(f, ["epoch", *CURVE_KEYS])
            writer.writeheader()
            writer.writerows(kept)
        self.last_epoch = epoch

    def epoch(self, row: dict) -> None:
        if row["epoch"] <= self.last_epoch:  # train.on_nan=rollback went back: the epoch is trained again
            self._keep_until(row["epoch"] - 1)
        self.last_epoch = row["epoch"]
        with self.curve.open("a", newline="") as f:
            csv.DictWriter(f, ["epoch", *CURVE_KEYS]).writerow({key: row.get(key) for key in ["epoch", *CURVE_KEYS]})

    def results(self, metrics: dict, figures: list[Path]) -> None:
        self._write_pairs(self.dir / "metrics.csv", flat_numbers(metrics))

    def finish(self, status: str) -> None:
        pass

    @staticmethod
    def _write_pairs(path: Path, pairs: dict) -> None:
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["name", "value"])
            writer.writerows(pairs.items())


class TensorBoardTracker:
    """Event files in ``subdir`` of the run directory (``tensorboard --logdir runs`` shows every
    run): the curve as scalars ``curve/<key>`` by epoch, the evaluation numbers as scalars at the
    last epoch, the config as hyperparameters (the HParams tab) and as text, the figures as images."""

    def __init__(self, subdir: str = "tensorboard"):
        self.subdir = subdir

    def start(self, run_dir: Path, config: dict, resumed_at: int | None, sweep: str | None) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        # purge_step: TensorBoard hides what an earlier writer logged from that epoch on
        self.new_writer = lambda purge_step: SummaryWriter(run_dir / self.subdir, purge_step=purge_step)
        self.writer = self.new_writer(None if resumed_at is None else resumed_at + 1)
        self.last_epoch = resumed_at or 0
        params = _flat_config(config)
        for summary in hparams(params, {"test.log_px.mean": float("nan")}):  # the HParams tab's table, by this metric
            self.writer.file_writer.add_summary(summary)
        self.writer.add_text("config", "\n".join(f"    {key}: {value}" for key, value in params.items()))

    def epoch(self, row: dict) -> None:
        if row["epoch"] <= self.last_epoch:  # train.on_nan=rollback went back: hide the epochs trained again
            self.writer.close()
            self.writer = self.new_writer(row["epoch"])
        self.last_epoch = row["epoch"]
        for key in CURVE_KEYS:
            if row.get(key) is not None:
                self.writer.add_scalar(f"curve/{key}", row[key], row["epoch"])

    def results(self, metrics: dict, figures: list[Path]) -> None:
        import matplotlib.image

        for name, value in flat_numbers(metrics).items():
            self.writer.add_scalar(name, value, self.last_epoch)
        for path in figures:
            self.writer.add_image(f"plots/{path.stem}", matplotlib.image.imread(path)[..., :3], self.last_epoch, dataformats="HWC")

    def finish(self, status: str) -> None:
        self.writer.close()


@contextmanager
def _mlflow_quiet():
    """MLflow's SQL store maps its tables with a loader option (``noload``) that SQLAlchemy 2.1
    deprecates; harmless for what a run logs, and MLflow's to change."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The ``noload`` loader strategy is deprecated")
        yield


class MlflowTracker:
    """One MLflow run per run directory, in one experiment per sweep (``experiment_name``, by
    default the sweep's directory, or ``runs`` for single runs), in the store at
    ``tracking_uri`` (by default ``sqlite:///mlflow.db`` in the working directory, which
    ``mlflow ui`` run there opens). The run's id is kept in ``.mlflow_run`` of the run
    directory, so that a resumed run continues the same MLflow run."""

    ID_FILE = ".mlflow_run"

    def __init__(self, tracking_uri: str = "sqlite:///mlflow.db", experiment_name: str | None = None, artifact_location: str | None = None):
        self.tracking_uri, self.experiment_name = tracking_uri, experiment_name
        self.artifact_location = artifact_location or self._beside_the_database(tracking_uri)

    @staticmethod
    def _beside_the_database(tracking_uri: str) -> str | None:
        """``mlartifacts/`` beside a SQLite store's file, where MLflow would otherwise put a new
        experiment's artifacts in the working directory; a server decides for itself (None)."""
        prefix = "sqlite:///"
        if not tracking_uri.startswith(prefix):
            return None
        return (Path(tracking_uri[len(prefix):]).resolve().parent / "mlartifacts").as_uri()

    def start(self, run_dir: Path, config: dict, resumed_at: int | None, sweep: str | None) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        id_file = run_dir / self.ID_FILE
        with _mlflow_quiet():
            self.client = MlflowClient(self.tracking_uri)
            if id_file.exists():
                self.run_id = id_file.read_text().strip()
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                name = self.experiment_name or sweep or "runs"
                experiment = self.client.get_experiment_by_name(name)
                experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name, self.artifact_location)
                self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name, tags={"run_dir": str(run_dir.resolve())}).info.run_id
                id_file.write_text(self.run_id + "\n")
            # a resume may change train.epochs and evaluation.*; MLflow keeps a parameter's first value
            logged = self.client.get_run(self.run_id).data.params
            params = [Param(key, value[:6000]) for key, value in _flat_config(config).items() if key not in logged]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
                self.client.log_batch(self.run_id, params=params[i : i + 100])
        self.last_epoch = resumed_at or 0

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in values.items()]
        with _mlflow_quiet():
            for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a call
                self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def epoch(self, row: dict) -> None:
        self.last_epoch = row["epoch"]
        self._log({f"curve/{key}": row[key] for key in CURVE_KEYS if row.get(key) is not None}, row["epoch"])

    def results(self, metrics: dict, figures: list[Path]) -> None:
        self._log(flat_numbers(metrics), self.last_epoch)
        with _mlflow_quiet():
            for path in figures:
                self.client.log_artifact(self.run_id, str(path), "plots")

    def finish(self, status: str) -> None:
        with _mlflow_quiet():
            self.client.set_terminated(self.run_id, status)


class Trackers(Callback):
    """The run's trackers as one: :meth:`run` starts them, and finishes them as ``FINISHED``,
    or as ``FAILED`` when the run raises; as a callback of ``fit``, each epoch's row goes to each.

    A tracker watches the run and must not end it: one that raises (an MLflow store that
    became unwritable, a full disk under the event files) is warned about once, with its
    error, and left out for the rest of the run, which goes on and writes its ``metrics.json``."""

    def __init__(self, trackers: list):
        self.trackers = trackers

    def _each(self, call: str, *args) -> None:
        """``tracker.call(*args)`` for every tracker still working; a failing one is dropped."""
        for tracker in list(self.trackers):
            try:
                getattr(tracker, call)(*args)
            except Exception as e:
                self.trackers.remove(tracker)
                log.warning(f"the {type(tracker).__name__} stopped working ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); the run goes on without it")

    @contextmanager
    def run(self, run_dir: Path, config: dict, resumed_at: int | None, sweep: str | None):
        self._each("start", run_dir, config, resumed_at, sweep)
        try:
            yield self
        except BaseException as e:
            self._each("finish", "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
            raise
        self._each("finish", "FINISHED")

    def epoch(self, row: dict) -> None:
        self._each("epoch", row)

    def epoch_end(self, row: dict, progress: dict) -> None:
        self.epoch(row)

    def results(self, metrics: dict, run_dir: Path) -> None:
        self._each("results", metrics, _figures(run_dir))
