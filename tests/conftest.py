"""Shared fixtures: seeded Pyro, composed configs, and tiny data files in the real formats."""

import gzip
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

CONF = Path(__file__).resolve().parents[1] / "conf"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One torch thread per test worker, as many workers as cores (make test): threads of two
    # workers would only contend for the same cores. Subprocesses of a test inherit the setting.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def _parse_each_config_file_once() -> None:
    """Hydra parses every YAML file a config composes from again at each compose (about a
    third of its 0.2 s, and the suite composes some 300 times). Within a test session each
    parse is kept (a file of the repository's under its size and modification time too) and
    every compose gets a copy of it: what Hydra then does with it is unchanged."""
    import copy

    from hydra._internal.sources_registry import SourcesRegistry
    from hydra.core.plugins import Plugins

    Plugins.instance()  # its scan of Hydra's plugins defines the config sources' classes anew
    for scheme in ("file", "pkg"):
        source = SourcesRegistry.instance().resolve(scheme)
        parse, parsed = source.load_config, {}

        def load_config(self, config_path, parse=parse, parsed=parsed):
            key = (self.path, config_path)
            if self.scheme() == "file":
                try:
                    stat = (Path(self.path.split("://", 1)[-1]) / self._normalize_file_name(config_path)).stat()
                except OSError:  # Hydra's own error, as without the cache
                    return parse(self, config_path)
                key += (stat.st_size, stat.st_mtime_ns)
            if key not in parsed:
                parsed[key] = parse(self, config_path)
            return copy.deepcopy(parsed[key])

        source.load_config = load_config


_parse_each_config_file_once()


def pytest_collection_modifyitems(items):
    """``@pytest.mark.cuda`` tests skip cleanly on a machine without CUDA."""
    if not torch.cuda.is_available():
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture(autouse=True)
def _seeded_pyro():
    """Every test starts from the same RNG state, an empty param store, and Pyro's argument
    checks off, as runs have them (``train.validate=false``): the path users run, including
    the lean training step, which validation would turn off. A test of the checks turns them on."""
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    with pyro.validation_enabled(False):
        yield


def compose_config(*overrides: str):
    """The composed ``train`` config with ``overrides``, as ``python -m inference.train`` sees it."""
    # imported here, not at the top: pytest-xdist's controller imports this file and runs no test
    import inference  # noqa: F401  (registers the schemas that conf/train.yaml composes)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def run_command(main, *arguments: str) -> tuple[int, str]:
    """An entry point (``inference.train.main``, ``inference.evaluate.main``) run in this process
    as its command runs it: parsed from ``sys.argv``, with Hydra's error handling. Returns the
    exit code and what it printed. For what needs no interpreter of its own (a command's
    refusals, a run that tests read); a test of the command itself starts one."""
    import contextlib
    import io
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    printed, code, uncaught = io.StringIO(), 0, ""
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        patch.setattr(sys, "argv", [main.__module__, *arguments])
        patch.setenv("HYDRA_FULL_ERROR", "0")
        try:
            main()
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        except Exception as e:  # what escapes Hydra's own handling: the interpreter would print it and exit 1
            code, uncaught = 1, f"{type(e).__name__}: {e}"
        finally:  # Hydra configures the root logger for its job, with a file handler on its log,
            for handler in root.handlers:
                if handler not in handlers:
                    handler.close()
            root.handlers[:], root.level = handlers, level
            HydraConfig.instance().cfg = None  # and keeps the job's config, which runs started by tests must not see
            GlobalHydra.instance().clear()
    return code, printed.getvalue() + uncaught


# Overrides that make a run tiny: a few steps and few particles, on the CPU.
TINY = [
    "train.epochs=2",
    "train.batch_size=64",
    "train.progress=false",
    "train.device=cpu",
    "train.validate=false",  # as users run (the default); test_train.py keeps one run with validation on
    "evaluation.num_particles=8",
    "evaluation.max_points=32",
    "evaluation.figures=false",
    # the naive estimator: most of a tiny run's evaluation, read only by the tests that turn it on
    # again (the run contract in test_train.py, the diagnostics, guide=prior)
    "evaluation.prior_proposal=false",
    # sequence runs: the sequential Monte Carlo estimate with 100 particles (1000 by default), read
    # by the test of the linear-Gaussian run, which asks for the default again
    "evaluation.smc_particles=100",
    "z_dim=4",
]
SMALL_NETS = ["encoder.hidden=[32]", "decoder.hidden=[32]"]
# Pendulum sequences of 5 frames of 8 × 8 pixels, forecast 3 frames after 2 (with experiment=pendulum_sequences).
# the drive switched off (evaluation.intervene, pendulum_dynamics) after 3 frames: one more than the forecast's context, a second filtering
SHORT_SEQUENCES = ["data.num_train=8", "data.num_valid=2", "data.num_test=4", "data.frames=5", "data.size=8", "evaluation.forecast_context=2", "evaluation.forecast_horizon=3",
                   "evaluation.intervention_context=3"]


def without_timings(value):
    """Metrics with every timing removed: what two runs of the same seed must share exactly."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def checkpoint_programs(cfg, run_dir: Path):
    """``(data, model, guide)`` of a run: its data, and its programs rebuilt and loaded from its
    checkpoint, in eval mode."""
    from inference.runs import instantiate
    from inference.runs.build import prepared
    from inference.training.checkpoint import load_checkpoint

    data = instantiate(cfg.data)
    model, guide = prepared(cfg, data, torch.device("cpu"))
    state = load_checkpoint(run_dir)
    model.load_state_dict(state["model"]), guide.load_state_dict(state["guide"])
    return data, model.eval(), guide.eval()


def fresh_estimate(cfg, run_dir: Path, num_particles: int, split: str = "test", seed: int = 987_654_321):
    """The run's programs rebuilt from its checkpoint and estimated anew on the points its
    evaluation used, with draws of their own (``seed``): ``(x, estimate)``."""
    from inference.estimators import importance_sampling
    from inference.estimators.programs import sliced
    from inference.runs.build import batch_keys
    from inference.runs.rundir import fingerprints, read_per_point

    data, model, guide = checkpoint_programs(cfg, run_dir)
    points = slice(0, cfg.evaluation.max_points)
    x, extra = data.split(split)[points], sliced(data.batch_extra(split, batch_keys(model, guide)), points)
    assert np.array_equal(fingerprints(x), read_per_point(run_dir)[f"{split}.fingerprint"])  # the points the run evaluated
    with torch.no_grad():
        return x, importance_sampling(model, guide, x, num_particles=num_particles, extra=extra, seed=seed)


def assert_not_above_within_monte_carlo(estimate, exact, what: str, sigmas: float = 3.0) -> None:
    """Per-point estimates of a lower bound (an ELBO, log p̂ in expectation) against the exact
    per-point values: their mean excess is within ``sigmas`` standard errors of zero or below."""
    above = torch.as_tensor(estimate, dtype=torch.float64) - torch.as_tensor(exact, dtype=torch.float64)
    bound = sigmas * above.std().item() / len(above) ** 0.5 + 1e-3
    assert above.mean().item() < bound, f"{what} above the exact log p(x) by {above.mean().item():.4f} (bound {bound:.4f})"


def assert_same_within_monte_carlo(a, b, what: str, sigmas: float = 4.0) -> None:
    """Two per-point estimates of the same per-point quantities with independent draws: the
    mean of their paired difference is within ``sigmas`` standard errors of zero."""
    difference = torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)
    bound = sigmas * difference.std().item() / len(difference) ** 0.5 + 1e-6
    assert abs(difference.mean().item()) < bound, f"{what}: paired difference {difference.mean().item():.4f} beyond {bound:.4f}"


def assert_run_estimates_its_programs(cfg, run_dir: Path, split: str = "test") -> None:
    """The run's per-point log p̂(x) and ELBO (``per_point.npz``, whose means are in
    ``metrics.json``) are those of its checkpoint's programs on its points: a fresh estimate at
    the run's K, with draws of its own, agrees with each within Monte Carlo error. Fails where
    the run evaluated other programs (untrained ones, another epoch's), other points, or wrote
    one number under the other's name."""
    import json

    from inference.runs.rundir import read_per_point

    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())[split]
    per_point = read_per_point(run_dir)
    assert metrics["log_px"]["mean"] == pytest.approx(float(per_point[f"{split}.log_px"].mean()), rel=1e-5)
    assert metrics["elbo"] == pytest.approx(float(per_point[f"{split}.elbo"].mean()), rel=1e-5)
    _, fresh = fresh_estimate(cfg, run_dir, metrics["log_px"]["num_particles"], split)
    assert_same_within_monte_carlo(per_point[f"{split}.log_px"], fresh.log_px, "log p-hat(x), the run's against fresh draws")
    assert_same_within_monte_carlo(per_point[f"{split}.elbo"], fresh.elbo, "ELBO, the run's against fresh draws")


def assert_drawn(path: Path) -> None:
    """``path`` is a PNG figure with something drawn on it: not blank, not a single colour."""
    from matplotlib.image import imread

    image = imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) >= 100, image.shape
    assert image[..., :3].std() > 0.02, f"{path.name} is blank"


# Strongly correlated columns: the posterior of z is correlated, so a diagonal q cannot match it.
CORRELATED_W = torch.tensor([[1.0, 0.9], [0.8, 1.0], [1.0, 1.1], [0.5, 0.4], [1.2, 1.0], [0.3, 0.5]])
X_SCALE = 0.5


def best_diagonal_gap() -> float:
    """KL(q* ‖ p) of the best diagonal Gaussian q* for the Gaussian posterior p with precision
    Λ = (WᵀW + σ²I)/σ²: q* has variances 1/Λ_ii (Bishop 2006, §10.1.2), so the KL is
    ½(Σ_i log Λ_ii − log det Λ), the same for every x."""
    precision = (CORRELATED_W.T @ CORRELATED_W + X_SCALE**2 * torch.eye(2)) / X_SCALE**2
    return 0.5 * (precision.diagonal().log().sum() - torch.logdet(precision)).item()


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as a gzipped IDX file, LeCun's MNIST format."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    """A folder with the four MNIST IDX gz files, holding 40 training and 10 test images, the
    labels cycling through the ten classes."""
    rng = np.random.default_rng(0)
    root = tmp_path / "mnist"
    root.mkdir()
    for prefix, n in [("train", 40), ("t10k", 10)]:
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)  # every class, for data.num_labeled
    return root


@pytest.fixture
def binarized_mnist_root(tmp_path) -> Path:
    """A folder with the three Larochelle .amat files, 20 rows of 784 zeros and ones each."""
    rng = np.random.default_rng(0)
    root = tmp_path / "binarized_mnist"
    root.mkdir()
    for split in ("train", "valid", "test"):
        np.savetxt(root / f"binarized_mnist_{split}.amat", rng.integers(0, 2, (20, 784)), fmt="%d")
    return root


@pytest.fixture
def frey_root(tmp_path) -> Path:
    """A folder with frey_rawface.mat holding 30 random 28×20 faces, one per column."""
    from scipy.io import savemat

    root = tmp_path / "frey_face"
    root.mkdir()
    savemat(root / "frey_rawface.mat", {"ff": np.random.default_rng(0).integers(0, 256, (560, 30)).astype(np.uint8)})
    return root


@pytest.fixture
def caltech_root(tmp_path) -> Path:
    """A folder with caltech101_silhouettes_28_split1.mat: 20/10/10 binary images."""
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    root = tmp_path / "caltech"
    root.mkdir()
    splits = {f"{k}_data": rng.integers(0, 2, (n, 784)).astype(np.float64) for k, n in [("train", 20), ("val", 10), ("test", 10)]}
    savemat(root / "caltech101_silhouettes_28_split1.mat", splits)
    return root


@pytest.fixture(scope="session")
def encoded_run(tmp_path_factory) -> Path:
    """A finished tiny run on the digits, with its ``.hydra/config.yaml`` as Hydra writes it:
    what ``data=encoded data.run=...`` reads (once per test worker)."""
    from omegaconf import OmegaConf

    from inference.runs import train

    run_dir = tmp_path_factory.mktemp("encoded_run")
    cfg = compose_config(*TINY, *SMALL_NETS)
    train(cfg, run_dir)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return run_dir


@pytest.fixture
def own_root(tmp_path) -> Path:
    """A user's own data of each kind: ``d.npz`` (60 8×8 uint8 images with labels), ``images/``
    (two class folders of 20 PNGs) and ``t.csv`` (60 rows of two real columns and a label)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "own"
    root.mkdir()
    np.savez(root / "d.npz", x=rng.integers(0, 256, (60, 8, 8)).astype(np.uint8), y=np.arange(60) % 3)
    for c in range(2):
        (root / "images" / f"class_{c}").mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 256, (8, 8)).astype(np.uint8)).save(root / "images" / f"class_{c}" / f"{i}.png")
    rows = ["a,b,label"] + [f"{rng.normal():.4f},{rng.normal():.4f},{'xy'[i % 2]}" for i in range(60)]
    (root / "t.csv").write_text("\n".join(rows) + "\n")
    return root
