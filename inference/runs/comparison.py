"""Comparison of runs: the runs of one or more sweeps turned into a table (markdown and CSV) and
figures (``python -m inference.compare DIR [DIR ...]``).

A run is any folder below the given ones that holds ``.hydra/overrides.yaml``. Its columns are
the overrides that differ between runs, then the test metrics; runs without a readable
``metrics.json`` are listed with their status instead of stopping the comparison.

Runs evaluated on the same test points are paired: the difference of two runs' log p̂(x),
point by point, has a far smaller standard error than either mean, since most of the spread
is between points. Each run's ``per_point.npz`` holds its points' fingerprints and numbers; the
``paired_*`` columns give the mean difference of log p̂(x) against a baseline run over their
common points, with its standard error, and mark differences beyond two standard errors. Runs
that differ only in ``train.seed`` are summarized across seeds under the table. Under it too, the
runs as hypotheses (:mod:`.ranking`): ranked by each one's tightest estimate, paired against the
best, with the posterior probability of each given the test points.
"""

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import yaml

from ..evaluations.figures import pyplot
from .ranking import ESTIMATES, ranking
from .rundir import FAILURE_MARK, PER_POINT, read_per_point

__all__ = ["find_runs", "read_run", "varying_overrides", "paired", "table", "compare"]

METRIC_COLUMNS = [
    "status",
    "test ELBO",
    "test log p̂(x)",
    "± stderr",
    "K",
    "test bits/dim",
    "bits levels",
    "approximation gap",
    "amortization gap",
    "inference gap",
    "train seconds",
    "steps",
    "paired_diff",
    "paired_stderr",
    "paired_n",
    "paired_beyond_2se",
    "rank",
]


def find_runs(roots: list[Path]) -> list[Path]:
    """Every run folder (one holding ``.hydra/overrides.yaml``) below the roots, sorted."""
    runs = set()
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such folder; give the folder of a sweep (multirun/DATE/TIME) or of runs")
        runs.update(p.parent.parent for p in root.rglob(".hydra/overrides.yaml"))
    return sorted(runs)


def read_run(run: Path) -> dict:
    """The overrides and metrics of a run, and its status: complete, incomplete or failed."""
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) or []
    record = {"run": run, "overrides": {k: _as_written_by_yaml(v) for k, v in (o.split("=", 1) for o in overrides if "=" in o)}, "metrics": None, "per_point": None}
    config = run / ".hydra" / "config.yaml"
    data = (yaml.safe_load(config.read_text()) or {}).get("data", {}) if config.is_file() else {}
    record["features_of"] = data.get("run") if str(data.get("_target_", "")).endswith(".encoded") else None  # data=encoded: another run's features
    if (run / PER_POINT).is_file():
        record["per_point"] = read_per_point(run)
    path = run / "metrics.json"
    if not path.is_file():
        # the entry point logs why a run failed (FAILURE_MARK); one still running logged nothing such
        reasons = [
            line.split(FAILURE_MARK, 1)[1].strip()
            for log in run.glob("*.log")
            for line in log.read_text(errors="replace").splitlines()
            if FAILURE_MARK in line
        ]
        record["status"] = f"failed ({reasons[-1]})" if reasons else "incomplete"
        return record
    try:
        record["metrics"] = json.loads(path.read_text())
        test = record["metrics"].get("test")
        if test is None:
            record["status"] = "incomplete"
        elif test.get("log_px", {}).get("mean") is None or test.get("elbo") is None:
            record["status"] = "non-finite estimates (see its metrics.json)"
        else:
            record["status"] = "complete"
    except json.JSONDecodeError as e:
        record["status"] = f"failed (unreadable metrics.json: {e.msg})"
    return record


def paired(record: dict, baseline: dict, split: str = "test") -> dict | None:
    """The mean difference of log p̂(x), ``record`` − ``baseline``, over the points both
    evaluated (matched by fingerprint), with its standard error: the standard deviation of the
    point-wise differences over √n. None where the runs share no points (other data) or one
    has no ``per_point.npz``."""
    ours, theirs = record["per_point"], baseline["per_point"]
    key = f"{split}.log_px"
    if ours is None or theirs is None or key not in ours or key not in theirs:
        return None
    their_values = dict(zip(theirs[f"{split}.fingerprint"].tolist(), theirs[key].tolist()))
    differences = np.array([v - their_values[f] for f, v in zip(ours[f"{split}.fingerprint"].tolist(), ours[key].tolist()) if f in their_values])
    if differences.size == 0:
        return None
    stderr = float(differences.std(ddof=1) / math.sqrt(differences.size)) if differences.size > 1 else None
    mean = float(differences.mean())
    return {"diff": mean, "stderr": stderr, "n": int(differences.size), "beyond_2se": stderr is not None and abs(mean) > 2 * stderr}


def _paired_cells(record: dict, baseline: dict | None) -> list:
    pair = paired(record, baseline) if baseline is not None and record["status"] == "complete" else None
    if pair is None:
        return [None, None, None, None]
    return [pair["diff"], pair["stderr"], pair["n"], "yes" if pair["beyond_2se"] else "no"]


def _metric_cells(metrics: dict | None) -> list:
    test = (metrics or {}).get("test", {})
    log_px, gaps, train = test.get("log_px", {}), test.get("gaps", {}), (metrics or {}).get("train", {})
    return [
        test.get("elbo"),
        log_px.get("mean"),
        log_px.get("stderr"),
        log_px.get("num_particles"),
        test.get("bits_per_dim"),
        test.get("bits_levels"),
        gaps.get("approximation", {}).get("mean"),
        gaps.get("amortization", {}).get("mean"),
        gaps.get("inference", {}).get("mean"),
        train.get("seconds"),
        train.get("steps"),
    ]


def _as_written_by_yaml(value: str) -> str:
    """An override's value in one spelling per value (``False`` and ``false``, ``0.10`` and
    ``0.1`` the same): users type them either way, and the runs did not differ."""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return yaml.safe_dump(parsed, default_flow_style=True).removesuffix("\n...\n").strip() if isinstance(parsed, (bool, int, float)) else value


def varying_overrides(records: list[dict]) -> list[str]:
    """The override keys whose values differ between the complete runs (between all runs when
    none is complete): what the sweep varied."""
    done = [r for r in records if r["status"] == "complete"] or records
    keys = sorted({k for r in records for k in r["overrides"]})
    return [k for k in keys if len({r["overrides"].get(k) for r in done}) > 1]


def _name(record: dict, base: Path) -> str:
    """A run by its path below ``base``, the folder the compared ones share; a run that is that
    folder by its directory's name."""
    run = record["run"]
    relative = run.relative_to(base) if run.is_relative_to(base) else run
    return run.resolve().name if str(relative) == "." else str(relative)


def _shared_folder(roots: list[Path]) -> Path:
    """The deepest folder that holds every one of ``roots`` (the first, where they share none)."""
    try:
        return Path(os.path.commonpath([str(root) for root in roots]))
    except ValueError:  # absolute and relative paths mixed
        return Path(roots[0])


def table(records: list[dict], base: Path, baseline: dict | None = None) -> tuple[list[str], list[list]]:
    """Columns: the run, the overrides that differ between runs, then the metrics, the paired
    difference against ``baseline``, and the rank by test log p̂(x)."""
    varying = varying_overrides(records)
    header = ["run", *varying, *METRIC_COLUMNS]
    ranks = _ranks(records)
    rows = []
    for i, r in enumerate(records):
        cells = [_name(r, base), *(r["overrides"].get(k, "") for k in varying), r["status"], *_metric_cells(r["metrics"]), *_paired_cells(r, baseline)]
        rows.append([*cells, ranks.get(i)])
    return header, rows


def _ranks(records: list[dict]) -> dict[int, int]:
    """The rank of each complete run by test log p̂(x), 1 the highest, by index in ``records``."""
    scored = [(_metric_cells(r["metrics"])[1], i) for i, r in enumerate(records) if r["status"] == "complete"]
    return {i: rank for rank, (_, i) in enumerate(sorted((s for s in scored if s[0] is not None), reverse=True), 1)}


def paired_note(records: list[dict], baseline: dict | None, base: Path) -> str:
    """What the paired columns are against, and which complete runs could not be paired."""
    if baseline is None:
        return "No run is complete, so nothing is paired."
    unpaired = [_name(r, base) for r in records if r["status"] == "complete" and paired(r, baseline) is None]
    note = (
        f"paired_*: test log p̂(x) of each run minus that of the baseline {_name(baseline, base)}, over the test points both evaluated "
        "(standard error of the point-wise differences); paired_beyond_2se says whether the difference exceeds two of them."
    )
    if unpaired:
        note += f" Not paired (no per_point.npz, or no test points in common: other data): {', '.join(unpaired)}."
    return note


SEED_COLUMNS = ["runs", "overrides", "seeds", "mean test log p̂(x)", "stderr across seeds", "mean stderr within a run"]


def seeds_table(records: list[dict], base: Path) -> list[list]:
    """Rows of :data:`SEED_COLUMNS`: for runs that differ only in ``train.seed``, the mean test
    log p̂(x) across seeds with its standard error across seeds (the training noise) beside the
    mean of the runs' own standard errors (the evaluation noise). Empty when no two runs are so
    alike."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r["status"] == "complete":
            others = tuple(sorted((k, v) for k, v in r["overrides"].items() if k != "train.seed"))
            groups.setdefault(others, []).append(r)
    rows = []
    for others, runs in groups.items():
        if len({r["overrides"].get("train.seed") for r in runs}) < 2:
            continue
        values = np.array([r["metrics"]["test"]["log_px"]["mean"] for r in runs])
        within = float(np.mean([r["metrics"]["test"]["log_px"]["stderr"] for r in runs]))
        across = float(values.std(ddof=1) / math.sqrt(len(values)))
        overrides = ", ".join(f"{k}={v}" for k, v in others) or "(none)"
        rows.append([", ".join(_name(r, base) for r in runs), overrides, len(runs), float(values.mean()), across, within])
    return rows


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def bits_note(records: list[dict]) -> str | None:
    """Why the runs' bits per dimension must not be ranked against each other: they measure data
    of different numbers of levels (binarized and gray digits are different datasets)."""
    levels = {}
    for r in records:
        test = (r["metrics"] or {}).get("test", {})
        if test.get("bits_per_dim") is not None:
            levels.setdefault(test.get("bits_levels"), []).append(r["run"].name)
    if len(levels) < 2:
        return None
    groups = "; ".join(f"{level} levels: {', '.join(runs)}" for level, runs in sorted(levels.items(), key=lambda kv: kv[0] or 0))
    return f"Bits per dimension are not comparable across these runs, which measure data of different numbers of levels ({groups}); compare bits only within a group."


def features_note(records: list[dict]) -> str | None:
    """Which runs model another run's latent features (``data=encoded``): their log p̂ is a
    density of the features, which compares only with runs on the same features."""
    named = ", ".join(f"{r['run'].name} (the features of {r['features_of']})" for r in records if r.get("features_of"))
    if not named:
        return None
    return (
        f"Runs on latent features (data=encoded): {named}. Their log p̂(x) is a density of those features, not of the data: "
        "it compares only between runs on the same features."
    )


def _markdown_table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows)]


RANKING_COLUMNS = ["estimate", "mean log p̂(x)", "paired diff vs best", "± stderr", "beyond 2 se", "P(model | test points)", "P 2.5%", "P 97.5%"]


def ranking_table(ranked: list[dict], varying: list[str], base: Path) -> tuple[list[str], list[list]]:
    """The runs as hypotheses, the best first: :data:`RANKING_COLUMNS` after the run and the
    overrides that differ."""
    rows = [
        [
            _name(row["record"], base), *(row["record"]["overrides"].get(k, "") for k in varying), row["estimate"], row["mean"], row["diff"], row["stderr"],
            "" if row["stderr"] == 0 else ("yes" if abs(row["diff"]) > 2 * row["stderr"] else "no"), row["probability"], *row["interval"],
        ]
        for row in ranked
    ]
    return ["run", *varying, *RANKING_COLUMNS], rows


def _probability(p: float) -> str:
    """Probabilities to three digits, and those that round to 0 or 1 as how close they are."""
    if p == 0:
        return "< 1e-300"  # a total behind by more than about 700 nats: exp underflows
    if p < 5e-4:
        return f"{p:.1e}"
    if 1 - 5e-4 < p < 1:
        return f"1 − {1 - p:.1e}"
    return f"{p:.3f}"


def _stated(p: float) -> str:
    text = _probability(p)
    return text if text.startswith("<") else f"= {text}"


def ranking_note(ranked: list[dict]) -> str:
    estimates = ", ".join(f"{key} ({name})" for key, name in ESTIMATES.items())
    return (
        f"Each run's tightest estimate of test log p̂(x), the one with the highest mean of {estimates}, over the {ranked[0]['points']} test points "
        "every ranked run evaluated, paired against the best run's; P(model | test points): softmax of the runs' total log p̂ under a uniform "
        "prior, its 95% interval from normal draws of the totals' paired differences (see inference/runs/ranking.py)."
    )


def write_markdown(path: Path, header: list[str], rows: list[list], notes: list[str] = (), seeds: list[list] = (), ranked: tuple = ()) -> None:
    """The table, the notes under it, where runs differ only in their seed the table across
    seeds, and the runs ranked as hypotheses (``ranked``: header, rows and notes)."""
    lines = _markdown_table(header, rows)
    lines += ["", *notes] if notes else []
    if seeds:
        lines += ["", "Across training seeds (runs that differ only in train.seed):", "", *_markdown_table(SEED_COLUMNS, seeds)]
    if ranked:
        ranked_header, ranked_rows, ranked_notes = ranked
        lines += ["", "The runs as hypotheses, ranked by the evidence:", ""]
        probabilities = [[*row[:-3], *map(_probability, row[-3:])] for row in ranked_rows]  # to the digits that tell 1 − 1e-9 from 1
        lines += _markdown_table(ranked_header, probabilities) if ranked_rows else []
        lines += ["", *ranked_notes] if ranked_rows and ranked_notes else ranked_notes
    path.write_text("\n".join(lines) + "\n")


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])


def _label(record: dict, varying: list[str]) -> str:
    return ", ".join(f"{k}={record['overrides'].get(k, '')}" for k in varying) or record["run"].name


def plot_bars(path: Path, records: list[dict], varying: list[str]) -> None:
    """log p̂(x) (with standard-error bars) and ELBO per run, bars rising from below the lowest."""
    done = [r for r in records if r["status"] == "complete"]
    log_px = [r["metrics"]["test"]["log_px"] for r in done]
    elbo = [r["metrics"]["test"]["elbo"] for r in done]
    values = [v["mean"] for v in log_px] + elbo
    span = (max(values) - min(values)) if values else 1.0
    floor = min(values, default=0.0) - 0.5 * span - 0.5  # negative nats: bars start below them all
    fig, ax = pyplot().subplots(figsize=(max(6, 1.2 * len(done) + 2), 4.5))
    positions = list(range(len(done)))
    ax.bar([p - 0.2 for p in positions], [v["mean"] - floor for v in log_px], width=0.4, bottom=floor,
           yerr=[v["stderr"] for v in log_px], capsize=3, label="log p̂(x), guide proposal")
    ax.bar([p + 0.2 for p in positions], [e - floor for e in elbo], width=0.4, bottom=floor, label="ELBO")
    ax.set_xticks(positions, [_label(r, varying) for r in done], rotation=20, ha="right")
    ax.set_ylim(floor, max(values, default=0.0) + 0.3 * span + 0.3)
    ax.set_ylabel("nats per data point (test)")
    ax.set_title("Test log p̂(x) and ELBO per run")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot().close(fig)


def plot_ranking(path: Path, ranked: list[dict], varying: list[str]) -> None:
    """The paired difference of each run against the best, with two standard errors, and each
    run's posterior probability beside its bar."""
    fig, ax = pyplot().subplots(figsize=(9, 1.2 + 0.6 * len(ranked)))
    positions = list(range(len(ranked)))[::-1]  # the best at the top
    ax.barh(positions, [row["diff"] for row in ranked], xerr=[2 * row["stderr"] for row in ranked], capsize=3, color="C0")
    ax.set_yticks(positions, [_label(row["record"], varying) for row in ranked])
    for position, row in zip(positions, ranked):  # beside the axes, right: P and its 95% interval
        low, high = (_probability(p) for p in row["interval"])
        ax.text(1.02, position, f"P {_stated(row['probability'])}\n95%: {low} to {high}", transform=ax.get_yaxis_transform(), va="center", fontsize=8)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("paired difference of test log p̂(x) against the best, nats a point (± 2 se)")
    ax.set_title("Runs as hypotheses, ranked by the evidence")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot().close(fig)


def plot_curves(path: Path, records: list[dict], varying: list[str]) -> None:
    """Mean log p̂(x) against K for each run's guide, and the prior proposal dashed."""
    fig, ax = pyplot().subplots(figsize=(7, 4.5))
    for i, r in enumerate(r for r in records if r["status"] == "complete"):
        test = r["metrics"]["test"]
        for key, style in [("log_px", "-"), ("log_px_prior", "--")]:
            curve = test.get(key, {}).get("curve")
            if curve:
                ks = sorted((k for k in curve if curve[k] is not None), key=int)
                label = _label(r, varying) + (" (prior proposal)" if key == "log_px_prior" else "")
                ax.plot([int(k) for k in ks], [curve[k] for k in ks], style, color=f"C{i % 10}", marker="o", markersize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("K, importance samples per data point")
    ax.set_ylabel("mean log p̂(x), nats (test)")
    ax.set_title("The guide needs few samples; the prior needs astronomically many")
    if ax.get_legend_handles_labels()[0]:  # runs evaluated without a curve draw none
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot().close(fig)


def compare(roots: list[Path], out: Path, baseline: Path | None = None) -> list[dict]:
    """Write compare.md, compare.csv, compare_bars.png and compare_curves.png into ``out``,
    compare_seeds.csv where runs differ only in ``train.seed``, and compare_ranking.csv and
    compare_ranking.png where two or more runs can be ranked on common test points.

    :param baseline: the run the paired differences are taken against; the first complete run
        when None."""
    runs = find_runs(roots)
    if not runs:
        raise FileNotFoundError(f"no runs (folders with .hydra/overrides.yaml) under {', '.join(map(str, roots))}")
    records = [read_run(r) for r in runs]
    if baseline is None:
        base_record = next((r for r in records if r["status"] == "complete"), None)
    else:
        base_record = next((r for r in records if r["run"].resolve() == Path(baseline).resolve()), None)
        if base_record is None or base_record["status"] != "complete":
            found = "is not among the runs compared" if base_record is None else f"is {base_record['status']}"
            raise FileNotFoundError(f"--baseline {baseline} {found}; give a complete run folder below {', '.join(map(str, roots))}")
    base = _shared_folder(roots)
    header, rows = table(records, base, base_record)
    varying = varying_overrides(records)
    out.mkdir(parents=True, exist_ok=True)
    notes = [note for note in (bits_note(records), features_note(records), paired_note(records, base_record, base)) if note]
    seeds = seeds_table(records, base)
    ranked, unranked = ranking(records)
    ranked_header, ranked_rows = ranking_table(ranked, varying, base)
    ranked_notes = [note for note in (ranking_note(ranked) if ranked else None, unranked) if note]
    write_markdown(out / "compare.md", header, rows, notes, seeds, (ranked_header, ranked_rows, ranked_notes) if ranked or unranked else ())
    write_csv(out / "compare.csv", header, rows)
    if seeds:
        write_csv(out / "compare_seeds.csv", SEED_COLUMNS, seeds)
    if ranked:
        write_csv(out / "compare_ranking.csv", ranked_header, ranked_rows)
        plot_ranking(out / "compare_ranking.png", ranked, varying)
    plot_bars(out / "compare_bars.png", records, varying)
    plot_curves(out / "compare_curves.png", records, varying)
    return records
