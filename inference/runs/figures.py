"""The figures of a run, as PNG files in its ``plots/`` folder.

Every figure is SIZE inches at DPI (so 800 × 600 pixels), titled, with labelled axes. Images
are the decoder's mean (a sample where the likelihood has no mean), laid out in grids.
"""

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from pyro import poutine  # noqa: E402

from ..estimators import PARTICLE_DIM, posterior_mean, site_log_probs  # noqa: E402
from ..estimators.posterior import guide_draws  # noqa: E402

__all__ = [
    "SIZE",
    "DPI",
    "training_curve",
    "prior_samples",
    "reconstructions",
    "posterior_as_prior",
    "traversals",
    "latent_means",
    "log_px_against_k",
    "posterior_pairs",
    "posterior_contour",
]

SIZE, DPI = (8, 6), 100


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)  # no tight bbox: every figure keeps its pixel size
    plt.close(fig)
    return path


def _figure(title: str):
    fig = plt.figure(figsize=SIZE)
    fig.suptitle(title)
    return fig


@torch.no_grad()
def _decoded(model, z: torch.Tensor) -> torch.Tensor:
    """The likelihood's mean for each z (a sample where it has none), as ``(n, x_dim)``."""
    distribution = model.likelihood(model.decoder(z))
    try:
        return distribution.mean
    except NotImplementedError:
        return distribution.sample()


def _grid(fig, images: torch.Tensor, image_shape, rows: int, cols: int, row_labels=(), xlabel: str = "") -> None:
    ax = fig.add_subplot(1, 1, 1)
    h, w = image_shape
    canvas = np.ones((rows * (h + 1), cols * (w + 1)))
    for i, image in enumerate(images[: rows * cols].detach().cpu().clamp(0, 1).reshape(-1, h, w).numpy()):
        r, c = divmod(i, cols)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = image
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1)  # white lines between the images
    ax.set_xticks([])
    ax.set_yticks([(h + 1) * (r + 0.5) for r in range(len(row_labels))], row_labels) if row_labels else ax.set_yticks([])
    ax.set_xlabel(xlabel)


def training_curve(curve: list[dict], path: Path) -> Path:
    """Train and validation ELBO per epoch."""
    fig = _figure("Training curve")
    ax = fig.add_subplot(1, 1, 1)
    epochs = [row["epoch"] for row in curve]
    ax.plot(epochs, [row["train_elbo"] for row in curve], label="train ELBO")
    valid = [(row["epoch"], row["valid_elbo"]) for row in curve if row["valid_elbo"] is not None]
    if valid:
        ax.plot(*zip(*valid), label="validation ELBO")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO, nats per data point")
    ax.legend()
    return _save(fig, path)


def prior_samples(model, image_shape, path: Path, n: int = 64) -> Path:
    """x decoded from z ~ p(z)."""
    fig = _figure("Samples: z ~ p(z), decoder mean")
    _grid(fig, _decoded(model, model.prior(n).sample()), image_shape, 8, n // 8)
    return _save(fig, path)


def reconstructions(model, guide, x: torch.Tensor, image_shape, path: Path, n: int = 32) -> Path:
    """Inputs (odd rows) above their reconstructions from z ~ q(z|x) (even rows)."""
    x = x[:n]
    recon = _decoded(model, guide_draws(guide, x, 1)[0])
    rows = torch.stack([x.reshape(-1, 8, x.shape[1]), recon.reshape(-1, 8, x.shape[1])], 1).reshape(-1, x.shape[1])
    fig = _figure("Reconstructions: inputs above, decoded z ~ q(z|x) below")
    _grid(fig, rows, image_shape, rows.shape[0] // 8, 8, row_labels=["input", "recon."] * (rows.shape[0] // 16))
    return _save(fig, path)


def posterior_as_prior(model, guide, x_train: torch.Tensor, image_shape, path: Path, n: int = 64) -> Path:
    """Generation with the aggregate posterior as prior: z ~ q(z|x) for training x, then the
    decoder: what the model generates where its posteriors actually put mass."""
    x = x_train[torch.randperm(x_train.shape[0], device=x_train.device)[:n]]
    fig = _figure("Posterior-as-prior generation: z ~ q(z|x_train), decoder mean")
    _grid(fig, _decoded(model, guide_draws(guide, x, 1)[0]), image_shape, 8, n // 8)
    return _save(fig, path)


def traversals(model, guide, x: torch.Tensor, image_shape, path: Path, dims: int = 6, steps: int = 9) -> Path:
    """Decoded z moved along each of the most active latent dimensions (largest variance of the
    posterior means over the data, Burda et al. 2016), from −3 to +3 around their mean."""
    means = posterior_mean(guide, x)
    activity = means.var(0)
    top = activity.argsort(descending=True)[:dims].tolist()
    base = means.mean(0)
    z = base.repeat(len(top) * steps, 1)
    values = torch.linspace(-3, 3, steps, device=z.device)
    for row, d in enumerate(top):
        z[row * steps : (row + 1) * steps, d] = base[d] + values * activity[d].sqrt().clamp(min=1e-3)
    fig = _figure("Latent traversals: ±3 posterior-mean sd along the most active dimensions")
    _grid(fig, _decoded(model, z), image_shape, len(top), steps, row_labels=[f"z[{d}]" for d in top], xlabel="−3 sd  →  +3 sd")
    return _save(fig, path)


def latent_means(guide, x: torch.Tensor, path: Path, labels: torch.Tensor | None = None) -> Path:
    """The points' posterior means in 2-D: the latent itself when it is 2-D, else its first two
    principal components; coloured by label where there are labels."""
    means = posterior_mean(guide, x).cpu()
    if means.shape[1] == 2:
        points, axes = means, ("z[0]", "z[1]")
    else:
        centred = means - means.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        points, axes = centred @ v[:2].T, ("first principal component", "second principal component")
    fig = _figure("Posterior means of the test set" + ("" if means.shape[1] == 2 else f" (PCA of {means.shape[1]} dimensions)"))
    ax = fig.add_subplot(1, 1, 1)
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=8)
    else:
        fig.colorbar(ax.scatter(points[:, 0], points[:, 1], s=8, c=labels.cpu().numpy(), cmap="tab10"), ax=ax, label="label")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    return _save(fig, path)


def log_px_against_k(test: dict, path: Path) -> Path:
    """Mean log p̂(x) against K for the guide and the prior proposals, ± one standard error."""
    fig = _figure("log p̂(x) against the number of importance samples")
    ax = fig.add_subplot(1, 1, 1)
    for key, label in [("log_px", "guide proposal"), ("log_px_prior", "prior proposal")]:
        if key not in test:  # evaluation.prior_proposal=false
            continue
        curve, stderr = test[key]["curve"], test[key].get("curve_stderr", {})
        ks = sorted((k for k in curve if curve[k] is not None), key=int)
        mean = np.array([curve[k] for k in ks])
        band = np.array([stderr.get(k) or 0.0 for k in ks])
        line = ax.plot([int(k) for k in ks], mean, marker="o", markersize=3, label=label, linestyle="-" if key == "log_px" else "--")
        ax.fill_between([int(k) for k in ks], mean - band, mean + band, alpha=0.25, color=line[0].get_color())
    ax.set_xscale("log")
    ax.set_xlabel("K, importance samples per data point")
    ax.set_ylabel("mean log p̂(x), nats (test)")
    ax.legend()
    return _save(fig, path)


def posterior_pairs(nuts_z: torch.Tensor, guide_z: torch.Tensor, path: Path, point: int = 0, dims: int = 4) -> Path:
    """Pairs of latent dimensions for one point: NUTS draws against the guide's."""
    reference = nuts_z.flatten(0, 1)[:, point].cpu()
    q = guide_z[:, point].cpu()
    d = min(dims, reference.shape[1])
    fig = _figure(f"Posterior of test point {point}: NUTS (blue) and the guide q(z|x) (orange)")
    if d == 1:
        ax = fig.add_subplot(1, 1, 1)
        ax.hist([reference[:, 0].numpy(), q[:, 0].numpy()], bins=40, density=True, label=["NUTS", "guide"])
        ax.set_xlabel("z[0]"), ax.set_ylabel("density"), ax.legend()
        return _save(fig, path)
    for i in range(1, d):
        for j in range(i):
            ax = fig.add_subplot(d - 1, d - 1, (i - 1) * (d - 1) + j + 1)
            ax.scatter(reference[:, j], reference[:, i], s=2, alpha=0.4, color="C0")
            ax.scatter(q[:, j], q[:, i], s=2, alpha=0.4, color="C1")
            ax.set_xlabel(f"z[{j}]", fontsize=8), ax.set_ylabel(f"z[{i}]", fontsize=8)
            ax.tick_params(labelsize=7)
    return _save(fig, path)


@torch.no_grad()
def posterior_contour(model, guide, x: torch.Tensor, path: Path, grid: int = 120) -> Path:
    """For a 2-D latent: the exact unnormalized posterior p(z) p(x|z) of one point on a grid
    (filled contours), and the guide's density over it (lines)."""
    x = x[:1]
    center = posterior_mean(guide, x)[0].cpu()
    span = 4.0
    a = torch.linspace(float(center[0]) - span, float(center[0]) + span, grid)
    b = torch.linspace(float(center[1]) - span, float(center[1]) + span, grid)
    za, zb = torch.meshgrid(a, b, indexing="xy")
    z = torch.stack([za.flatten(), zb.flatten()], -1)[:, None, :].to(x.device)  # (G², 1, 2)
    with pyro.plate("particles", z.shape[0], dim=PARTICLE_DIM):
        model_trace = poutine.trace(poutine.condition(model, data={"z": z})).get_trace(x)
        guide_trace = poutine.trace(poutine.condition(guide, data={"z": z})).get_trace(x)
    log_joint = site_log_probs(model_trace, z.shape[0], 1, observed=None).reshape(-1)
    log_q = guide_trace.nodes["z"]["fn"].log_prob(z).reshape(-1)
    fig = _figure("Posterior of one test point: exact p(z|x) up to a constant (filled), q(z|x) (lines)")
    ax = fig.add_subplot(1, 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        posterior = (log_joint - log_joint.max()).exp().reshape(grid, grid).cpu()
        ax.contourf(a, b, posterior, levels=12, cmap="Blues")
        ax.contour(a, b, (log_q - log_q.max()).exp().reshape(grid, grid).cpu(), levels=6, colors="C1")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    return _save(fig, path)
