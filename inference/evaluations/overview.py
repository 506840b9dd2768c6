"""The figures of every run, whatever its methods: the training curve, log p̂(x) against K, and
those the data and programs allow (samples, reconstructions, traversals, latent means, and for
a guide with a classifier the class analogies and the latent space by class)."""

import logging
from pathlib import Path

from ..data import Dataset
from . import figures
from .base import Programs

__all__ = ["draw_figures"]

log = logging.getLogger(__name__)


def draw_figures(model, guide, data: Dataset, programs: Programs, results: dict, curve: list[dict], folder: Path) -> None:
    """Every figure of :mod:`this module <.overview>` that the run's data and programs allow:
    image figures need 2-D images, those that move z as one vector need continuous latents
    under the data plate alone, and those that run the programs need ones that take x alone; a
    semi-supervised pair, which runs on x alone with y latent, gets the class figures. Runs of
    sequences get their methods' figures (the forecast's) instead of samples and reconstructions."""
    x = data.test[:500]
    if curve:
        figures.training_curve(curve, folder / "training_curve.png")
    if "log_px" in results.get("test", {}):
        figures.log_px_against_k(results["test"], folder / "log_px_against_k.png")
    if programs.guide.classifier and data.labels is not None:  # a semi-supervised model runs on x alone, its label y then a latent site
        if data.images:
            figures.class_analogies(model, guide, x, data.image_shape, folder / "class_analogies.png")
        figures.latent_by_class(guide, x, data.labels["test"][:500], folder / "latent_by_class.png")
    if programs.takes_keys:
        log.warning(f"skipped: the samples, reconstructions and latent figures, drawn here for {programs.takes_keys}")
        return
    if data.frames:
        return
    vector = programs.latent_vector is None
    if data.images:
        figures.prior_samples(model, x, data.image_shape, folder / "prior_samples.png")
        figures.reconstructions(model, guide, x, data.image_shape, folder / "reconstructions.png")
        if programs.guide.amortized:  # a local guide knows only the points it was fitted to
            figures.posterior_as_prior(model, guide, data.train, data.image_shape, folder / "posterior_as_prior.png")
        if vector:
            figures.traversals(model, guide, x, data.image_shape, folder / "traversals.png")
    if vector:
        figures.latent_means(model, guide, x, folder / "latent_means.png", data.labels["test"][:500] if data.labels is not None else None)
