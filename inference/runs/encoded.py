"""Latent features as data (``data=encoded data.run=RUN_DIR``): another run's dataset passed
through that run's trained guide, so that any model trains on the features, as M2 on M1's
(Kingma et al. 2014, the stacked M1+M2 model).

Each point becomes the Gaussian q(z|x) of the run's guide: a training point a fresh draw
z ~ q(z|x) every epoch (as a dynamic binarization redraws pixels: the features carry the
encoder's uncertainty, and a model on them sees more than one value of each point), a
validation and test point its posterior mean, a fixed feature, so that an evaluation and a
classifier's accuracy do not carry noise of the features' own. Labels and splits are the run's;
``num_labeled`` keeps the labels of that many training points, chosen with ``seed``.

``min_activity`` keeps only the active units (Burda et al. 2016): the dimensions whose posterior
mean moves with the data. An inactive dimension's q(z|x) is the prior's whatever x is, so its
training draws are pure N(0, 1) noise and its test features a constant: it tells a model nothing
of x. Kingma et al.'s code keeps the dimensions whose posterior mean has an sd above 0.1, the
same rule.
"""

import logging
from pathlib import Path

import pyro
import torch
from omegaconf import OmegaConf
from pyro import poutine

from ..data import Dataset
from ..data.dataset import SPLITS, with_labels_kept
from ..schema import typed
from .build import instantiate, trained

__all__ = ["encoded"]

log = logging.getLogger(__name__)


def encoded(run: str, site: str = "z", seed: int = 0, num_labeled: int | None = None, labeled_per_batch: int | str = 0,
            min_activity: float | None = None) -> Dataset:
    """``data=encoded``: the dataset of the run in ``run`` (its directory) as the features its
    guide gives, q(z|x) at the latent site ``site``.

    :param run: a finished run's directory (``data.run``), read from the directory the run starts in.
    :param site: the guide's latent site whose q(z|x), a diagonal Gaussian, the features are.
    :param seed: draws which labels are kept (``num_labeled``).
    :param num_labeled: semi-supervised: keep the labels of this many training points, as many of each class.
    :param labeled_per_batch: with ``num_labeled``: this many labelled points in every training
        batch (``"auto"``: as many as show each about once an epoch).
    :param min_activity: keep only the dimensions whose activity, the variance over the training
        points of the posterior mean, exceeds this (0.01: Burda et al.'s active units); None keeps all.
    """
    if min_activity is not None and not min_activity >= 0:
        raise ValueError(f"data.min_activity={min_activity!r}: expected a variance >= 0 (0.01: the active units), or null to keep every dimension")
    run_dir = Path(run).expanduser().resolve()
    config = run_dir / ".hydra" / "config.yaml"
    if not config.is_file() or not (run_dir / "checkpoint.pt").is_file():
        raise FileNotFoundError(f"data.run={run}: {run_dir} holds no finished run (.hydra/config.yaml and checkpoint.pt); name a run directory of inference.train")
    cfg = typed(OmegaConf.load(config))
    with pyro.validation_enabled(False), torch.no_grad():
        data = instantiate(cfg.data)
        if data.frames:
            raise ValueError(f"data.run={run} trained on sequences; data=encoded takes a run on single points")
        model, guide = trained(cfg, data, run_dir, torch.device("cpu"))
        guide.eval()
        moments = [_posterior_moments(guide, data.split(split), site, run) for split in SPLITS]
    labels = {split: data.labels[split] for split in SPLITS} if data.labels is not None else None
    (train, train_scale), (valid, _), (test, _) = moments
    if min_activity is not None:
        # from the training points' features alone: no label, no validation or test point chooses them
        activity = train.var(0)
        kept = activity > min_activity
        if not kept.any():
            raise ValueError(f"data.min_activity={min_activity}: no dimension of {site} is that active (the most active varies by "
                             f"{activity.max().item():.3g}); lower it, or set it to null to keep every dimension")
        log.info("data=encoded: %d of the %d dimensions of %s are active (posterior mean's variance > %g), the features keep those",
                 int(kept.sum()), kept.numel(), site, min_activity)
        train, train_scale, valid, test = train[:, kept], train_scale[:, kept], valid[:, kept], test[:, kept]
    features = Dataset(f"encoded({data.name})", train, valid, test, image_shape=(train.shape[1],), labels=labels, values="real", train_scale=train_scale,
                       origin={"run": str(run_dir)})
    return with_labels_kept(features, num_labeled, seed, labeled_per_batch)


def _posterior_moments(guide, x: torch.Tensor, site: str, run: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and sd of q(z|x) at ``site`` for every point of ``x``, in passes of 1000."""
    means, sds = [], []
    for part in x.split(1000):
        node = poutine.trace(guide).get_trace(part).nodes.get(site)
        if node is None or node["type"] != "sample":
            raise ValueError(f"data.run={run}: its guide has no latent site {site!r}; name the site of the features with data.site=...")
        fn = node["fn"]
        base = getattr(fn, "base_dist", fn)
        if type(base).__name__ != "Normal":
            raise ValueError(
                f"data.run={run}: its guide's q({site}|x) is {type(base).__name__}, and data=encoded takes a diagonal Gaussian "
                "(guide=normal, as M1 has it), whose mean and sd give each point's features"
            )
        means.append(fn.mean.reshape(len(part), -1)), sds.append(fn.stddev.reshape(len(part), -1))
    return torch.cat(means), torch.cat(sds)
