"""The few lines a user reads at the end of a run: its numbers from ``metrics.json``."""

from pathlib import Path

from ..estimators import unreliable
from ..evaluations import SUITE_KEYS

__all__ = ["summary"]


def summary(metrics: dict, run_dir: Path, evaluated_in: float | None = None) -> str:
    """The few lines a user reads at the end of a run; ``evaluated_in``: the seconds of a
    re-evaluation, which says so instead of what training did."""
    if evaluated_in is not None:
        lines = [f"evaluated the run's checkpoint in {evaluated_in:.1f} s"]
    else:
        lines = [f"trained {metrics['train']['steps']} steps in {metrics['train']['seconds']:.1f} s on {metrics['train']['device']}"]
    test = metrics.get("test")
    if test:
        if "elbo" in test:  # absent where evaluation.splits leaves test out and only a method of its own ran there
            lines.append(f"test ELBO                      {test['elbo']:10.3f} nats")
        for key, label in [("log_px", "test log p̂(x), guide proposal"), ("log_px_prior", "test log p̂(x), prior proposal")]:
            est = test.get(key)
            if est is None:  # evaluation.prior_proposal=false
                continue
            if est["mean"] is None:
                lines.append(f"{label}  not finite for {est['non_finite']} of {est['n']} points: {est['reason']}")
            else:
                lines.append(f"{label}  {est['mean']:10.3f} ± {est['stderr']:.3f}  (K={est['num_particles']}, n={est['n']})")
        warning = unreliable(test["log_px"]["diagnostics"]) if "diagnostics" in test.get("log_px", {}) else None
        if warning:
            lines.append(f"WARNING: {warning}")
        if "accuracy" in test:
            lines.append(f"test accuracy of q(y|x)        {test['accuracy']:10.4f}")
        if "accuracy_supervised_only" in test:
            lines.append(f"  same network, labels alone   {test['accuracy_supervised_only']:10.4f}")
        if "bits_per_dim" in test:
            lines.append(f"test bits per dimension        {test['bits_per_dim']:10.4f}  (data of {test['bits_levels']} levels)")
        if "gaps" in test and test["gaps"].get("inference", {}).get("mean") is not None:
            g = test["gaps"]
            lines.append(
                f"test gaps (n={g['points']}): approximation {g['approximation']['mean']:.3f} ± {g['approximation']['stderr']:.3f}, "
                f"amortization {g['amortization']['mean']:.3f} ± {g['amortization']['stderr']:.3f}"
            )
        if "probe" in test:
            r2 = ", ".join(f"{k} {v:.3f}" for k, v in test["probe"]["r2"].items())
            lines.append(f"test linear probe R²: {r2}")
        if "log_px_ais" in test and test["log_px_ais"].get("mean") is not None:
            a = test["log_px_ais"]
            lines.append(f"test log p̂(x), AIS             {a['mean']:10.3f} ± {a['stderr']:.3f}  (T={a['steps']}, {a['chains']} chains, n={a['n']})")
        if "bdmc" in test and test["bdmc"]["width"]["mean"] is not None:
            lines.extend(_bdmc_lines(test["bdmc"]))
        posterior = test.get("posterior")
        if posterior and not posterior.get("skipped"):
            lines.append(
                f"NUTS on {posterior['points']} test points: R̂ at most {posterior['nuts_r_hat_max']:.3f}, bulk ESS at least "
                f"{posterior['nuts_ess_bulk_min']:.0f}; q(z|x) against it: mean shift {posterior['mean_shift_in_sd']:.3f} sd, "
                f"scale ratio {posterior['scale_ratio']:.3f} (1: a match)"
            )
        if "log_px_exact" in test:
            lines.append(f"test log p(x), exact           {test['log_px_exact']['mean']:10.3f}")
        forecast = test.get("forecast")
        if forecast and not forecast.get("skipped"):
            pairs = ", ".join(f"{h}: {a:.4f}/{b:.4f}" for h, a, b in zip(forecast["horizons"], forecast["mse"], forecast["mse_repeat_last"]))
            lines.append(f"test forecast after {forecast['context']} frames{_filter_note(forecast)}, MSE model/repeat-last by horizon: {pairs}")
        if "physics" in test:
            constants = ", ".join(f"{name} {c['learned']:.3f} (true {c['true']:.3f})" for name, c in test["physics"].items())
            lines.append(f"learned physics: {constants}")
        intervention = test.get("intervention")
        if intervention:
            pairs = ", ".join(f"{h}: {a:.4f}/{b:.4f}" for h, a, b in zip(intervention["horizons"], intervention["mse_intervened"], intervention["mse_not_intervened"]))
            after = f"{intervention['context']} frames{_filter_note(intervention)}"
            lines.append(f"test drive switched off after {after}, MSE to the A=0 truth, do(A=0)/as learned by horizon: {pairs}")
            if intervention.get("mse_reduction_stderr"):
                reductions = ", ".join(
                    f"{h}: {r:+.1e} ± {s:.1e}" for h, r, s in zip(intervention["horizons"], intervention["mse_reduction"], intervention["mse_reduction_stderr"])
                )
                lines.append(f"  the MSE do(A=0) takes away, paired over the sequences, by horizon: {reductions}")
        denoise = test.get("denoise")
        if denoise and not denoise.get("skipped"):
            pairs = ", ".join(f"{level:g}: {a:.1f} → {b:.1f}" for level, a, b in zip(denoise["levels"], denoise["psnr_input"], denoise["psnr_denoised"]))
            lines.append(f"test denoising ({denoise['corruption']}), PSNR dB of input → denoised by level: {pairs}")
        for key, entry in test.items():
            if isinstance(entry, dict) and entry.get("skipped"):
                lines.append(f"skipped {key}: {entry['reason']}")
            elif key not in SUITE_KEYS and isinstance(entry, dict):  # a user's method: its numbers as it named them
                numbers = ", ".join(f"{name} {value:.4g}" for name, value in entry.items() if isinstance(value, (int, float)) and not isinstance(value, bool))
                lines.append(f"test {key}: {numbers}")
    lines.append(f"run directory: {run_dir}")
    return "\n".join(lines)


def _bdmc_lines(b: dict) -> list[str]:
    """BDMC's bounds, each with its standard error, and what their width says."""
    lower, upper, width = b["lower"], b["upper"], b["width"]
    lines = [
        f"BDMC on {b['points']} simulated points: {lower['mean']:.3f} ± {lower['stderr']:.3f} ≤ log p(x) ≤ {upper['mean']:.3f} ± {upper['stderr']:.3f} "
        f"(width {width['mean']:.3f} ± {width['stderr']:.3f}; importance sampling {b['log_px_importance']['mean']:.3f})"
    ]
    if width["mean"] < 0:
        noise = "within twice its standard error: Monte Carlo noise of bounds this close"
        beyond = "beyond twice its standard error: more AIS steps or chains (evaluation.ais_steps, ais_chains)"
        lines.append(f"  the bounds cross by {-width['mean']:.3f}, " + (noise if abs(width["mean"]) <= 2 * width["stderr"] else beyond))
    return lines


def _filter_note(entry: dict) -> str:
    """How the state a forecast starts from was filtered (entries from before the choice have no note)."""
    if entry.get("filter") == "particles":
        return f" (particle filter, ESS median {entry['filter_ess_median']:.0f} of {entry['filter_particles']})"
    return " (the guide's filter)" if entry.get("filter") == "guide" else ""
