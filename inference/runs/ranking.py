"""Runs as hypotheses, ranked by the evidence: each run's tightest estimate of log p(x) on the
test points every ranked run evaluated, paired against the best, and the posterior probability
of each run's model given those points under a uniform prior.

Every estimate the suite writes per point (importance sampling's ``log_px``, sequential Monte
Carlo's ``log_px_smc``) is a stochastic lower bound of log p(x): its expectation lies below the
truth by the estimator's bias. The higher mean is the tighter estimate, and a ranking by a
looser bound for one model than for another can reorder them, so each run is ranked by its own
tightest one (named in the table).

The posterior probability of run i's model given the N common test points is
softmax(L)_i, with L_i = Σ_n log p̂_i(x_n) and a uniform prior. Its uncertainty comes from the
paired differences: the totals' differences against the best, L_i − L_best, are sums over N
points, normal with the mean N·d̄ and the covariance N·Cov(d) of the point-wise differences d
(what the paired standard errors are made of). Draws of them give each probability's 95%
interval. The probabilities are of the fitted models (their parameters trained on the training
split) given the test points; they compare the hypotheses as trained, not their marginal
likelihoods over parameters.
"""

import math

import numpy as np

__all__ = ["ESTIMATES", "ranking", "tightest"]

#: the per-point estimates of log p(x) a run may have in per_point.npz, by key
ESTIMATES = {"log_px": "importance sampling", "log_px_smc": "sequential Monte Carlo"}
DRAWS = 20000  # of the totals' differences: the 2.5% quantile of a probability to about ±0.002


def tightest(record: dict, split: str = "test") -> str | None:
    """The key of the run's per-point estimate with the highest mean (the tightest lower bound),
    among those finite at every point; None where it has none."""
    points = record.get("per_point") or {}
    finite = [key for key in ESTIMATES if f"{split}.{key}" in points and np.isfinite(points[f"{split}.{key}"]).all()]
    return max(finite, key=lambda key: points[f"{split}.{key}"].mean(), default=None)


def ranking(records: list[dict], split: str = "test", seed: int = 0) -> tuple[list[dict], str | None]:
    """The complete runs ranked by their tightest estimates over the points all of them
    evaluated (matched by fingerprint), the best first: for each, the record, ``estimate`` (the
    key), ``mean`` (over the common points), ``diff`` and ``stderr`` (paired, against the best),
    ``probability`` and its 95% ``interval``. Also a sentence naming the runs left out, or None.
    Empty where fewer than two runs can be ranked."""
    complete = [(r, tightest(r, split)) for r in records if r["status"] == "complete"]
    candidates, estimates = [r for r, key in complete if key], [key for _, key in complete if key]
    left_out = [r for r, key in complete if not key]
    if len(candidates) < 2:
        return [], None
    by_point = [dict(zip(r["per_point"][f"{split}.fingerprint"].tolist(), r["per_point"][f"{split}.{key}"].tolist())) for r, key in zip(candidates, estimates)]
    common = sorted(set.intersection(*(set(points) for points in by_point)))
    if len(common) < 2:
        names = ", ".join(r["run"].name for r in candidates)
        return [], f"Not ranked: the runs {names} share fewer than two {split} points (other data)."
    values = np.array([[points[f] for f in common] for points in by_point], dtype=np.float64)  # (runs, points)
    n = len(common)
    best = int(values.sum(1).argmax())
    differences = values - values[best]
    mean = differences.mean(1)
    stderr = differences.std(1, ddof=1) / math.sqrt(n)
    probability = _softmax(n * mean)
    rng = np.random.default_rng(seed)
    totals = rng.multivariate_normal(n * mean, n * np.cov(differences), size=DRAWS, method="eigh", check_valid="ignore")
    drawn = _softmax(totals)
    low, high = np.quantile(drawn, [0.025, 0.975], axis=0)
    rows = [
        {
            "record": r, "estimate": estimates[i], "mean": float(values[i].mean()), "diff": float(mean[i]), "stderr": float(stderr[i]),
            "probability": float(probability[i]), "interval": (float(low[i]), float(high[i])), "points": n,
        }
        for i, r in enumerate(candidates)
    ]
    rows.sort(key=lambda row: -row["diff"])
    note = f"Not ranked (no finite per-point estimate of log p(x)): {', '.join(r['run'].name for r in left_out)}." if left_out else None
    return rows, note


def _softmax(totals: np.ndarray) -> np.ndarray:
    shifted = totals - totals.max(-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(-1, keepdims=True)
