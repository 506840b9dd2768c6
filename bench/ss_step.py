"""Semi-supervised (M2) training step: the suite's loop against hand-written PyTorch.

    python -m bench.ss_step [--repeats 9] [--steps 20] [--device cpu|cuda]

The networks of ``experiment=ss_mnist`` (z of 50 dimensions; encoder [x, one-hot y]-500-z,
decoder [z, one-hot y]-500-784, classifier 784-500-10, ReLU), MNIST-sized binary data with 100
labels, batches of 100 points of which 10 labelled (``data.labeled_per_batch=10``). Per step:

- suite: an epoch of ``inference.training.fit`` with ``objective=ss_elbo``: the M2 bound with y
  summed out exactly where it is not observed (``TraceEnum_ELBO``), plus α·Σ −log q(y | x) over
  the batch's labelled points; the seconds it reports for its second epoch;
- PyTorch: the same loss written by hand (:func:`handwritten_ss_loss`; a test checks that both
  estimate the same bound) on the same networks, with the same Adam.
"""

import argparse
import math
from functools import partial

import pyro
import torch
import torch.nn.functional as F

from guides import SemiSupervisedGuide
from inference.data import Dataset
from inference.data.dataset import with_labels_kept
from inference.training import fit, parameters_of
from inference.training.objectives import EnumeratedTrace_ELBO, KLWeighted, WithClassification
from models import MLP, Bernoulli, StandardNormal
from models.distributions import diagonal_normal_params
from models.ss_vae import SemiSupervisedVAE, with_one_hot

from .common import benchmark_device, binary_data, interleaved, machine

LOG_2PI = math.log(2 * math.pi)


def make_m2(x_dim: int = 784, hidden: int = 500, z_dim: int = 50, num_classes: int = 10) -> tuple[SemiSupervisedVAE, SemiSupervisedGuide]:
    model = SemiSupervisedVAE.build(StandardNormal(z_dim), partial(MLP, hidden=[hidden]), Bernoulli(), x_dim, num_classes)
    guide = SemiSupervisedGuide(partial(MLP, hidden=[hidden]), x_dim, z_dim, num_classes, classifier_hidden=(hidden,))
    return model, guide


def suite_loss(aux_weight: float) -> WithClassification:
    """``objective=ss_elbo`` as conf/objective/ss_elbo.yaml builds it."""
    return WithClassification(KLWeighted(EnumeratedTrace_ELBO), aux_weight=aux_weight)


def _bound(model, guide, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log p(x, y, z) − log q(z | x, y) per point, one z ~ q(z | x, y); x and y of any batch shape."""
    C = guide.num_classes
    z_loc, z_scale = diagonal_normal_params(guide.encoder(with_one_hot(x, y, C)), guide.scale_floor)
    eps = torch.randn_like(z_loc)
    z = z_loc + z_scale * eps
    logits = model.decoder(with_one_hot(z, y, C))
    log_px = (x * logits - F.softplus(logits)).sum(-1)
    log_pz = -0.5 * (z**2 + LOG_2PI).sum(-1)
    log_qz = (-0.5 * eps**2 - z_scale.log() - 0.5 * LOG_2PI).sum(-1)
    return log_px + log_pz - log_qz - math.log(C)  # log p(y) = −log C


def handwritten_ss_loss(model, guide, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, aux_weight: float) -> torch.Tensor:
    """The negative M2 objective of a batch: the bound of the labelled points, the bound of the
    unlabelled ones summed over every class c weighted by q(c | x) (one z per class and point),
    plus their entropy, and α·Σ −log q(y | x) over the labelled points."""
    C = guide.num_classes
    log_q = guide.classify(x).log_softmax(-1)
    labelled = _bound(model, guide, x[mask], y[mask]).sum()
    unlabelled_x, log_q_u = x[~mask], log_q[~mask].T  # (C, U)
    classes = torch.arange(C, device=x.device)[:, None].expand(C, unlabelled_x.shape[0])
    terms = _bound(model, guide, unlabelled_x.expand(C, *unlabelled_x.shape), classes)  # (C, U)
    unlabelled = (log_q_u.exp() * (terms - log_q_u)).sum()
    classification = log_q[mask].gather(1, y[mask][:, None]).sum()
    return -(labelled + unlabelled) - aux_weight * classification


def labelled_data(n: int, x_dim: int, num_labeled: int, per_batch: int, device: torch.device) -> Dataset:
    """Binary data with balanced class labels, ``num_labeled`` of them kept."""
    x = binary_data(n, x_dim).to(device)
    labels = torch.arange(n) % 10
    data = Dataset("bench", x, x[:0], x[:per_batch], image_shape=(x_dim,),
                   labels={"train": labels, "valid": labels[:0], "test": labels[:per_batch]})
    return with_labels_kept(data, num_labeled, labeled_per_batch=per_batch)


def bench(steps: int, repeats: int, device: torch.device, batch_size: int = 100, per_batch: int = 10) -> dict[str, float]:
    n = steps * (batch_size - per_batch) + 100  # an epoch of ``steps`` batches: the unlabelled points in slices of 90
    data = labelled_data(n, 784, 100, per_batch, device)
    model, guide = make_m2()
    model, guide = model.to(device), guide.to(device)
    aux_weight = 0.1 * n / 100  # the paper's α, as fit_to gives it
    optimizer = torch.optim.Adam(parameters_of(model, guide), lr=1e-3)
    loss = suite_loss(aux_weight)
    extra = data.batch_extra("train", ("y", "mask"))
    batch = torch.cat([torch.nonzero(~extra["mask"]).squeeze(1)[: batch_size - per_batch], torch.nonzero(extra["mask"]).squeeze(1)[:per_batch]])
    x, y, mask = data.train[batch], extra["y"][batch], extra["mask"][batch]
    suite_times = []

    def suite_loop():
        summary = fit(model, guide, data, optimizer, epochs=2, batch_size=batch_size, progress=False, loss=loss)
        suite_times.append(summary["curve"][1]["seconds"])

    def torch_steps():
        for _ in range(steps):
            step_loss = handwritten_ss_loss(model, guide, x, y, mask, aux_weight)
            optimizer.zero_grad(set_to_none=True)
            step_loss.backward()
            optimizer.step()

    times = interleaved({"suite": suite_loop, "PyTorch": torch_steps}, repeats)
    times["suite"] = sorted(suite_times)[len(suite_times) // 2]
    return {name: t / steps for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    device = benchmark_device(args.device)
    pyro.set_rng_seed(0)
    pyro.enable_validation(False)  # as in training runs
    t = bench(args.steps, args.repeats, device)
    print(f"# M2 training step (ss_mnist's networks, batch 100 with 10 labelled), {machine(device)}; median of {args.repeats} interleaved repeats of {args.steps} steps")
    print("| suite ms | PyTorch ms | suite / PyTorch |")
    print("|---:|---:|---:|")
    print(f"| {1e3 * t['suite']:.2f} | {1e3 * t['PyTorch']:.2f} | {t['suite'] / t['PyTorch']:.2f} |")


if __name__ == "__main__":
    main()
