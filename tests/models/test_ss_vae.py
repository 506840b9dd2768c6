"""The semi-supervised VAE (M2): its objective against the hand-written sum over classes, its
log p̂(x) with y summed out against the exact mixture likelihood, labels that must not leak, and
a run on the digits with a few labels."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from conftest import SMALL_NETS, TINY, assert_run_estimates_its_programs, checkpoint_programs, compose_config
from inference.estimators import importance_sampling
from inference.runs import summary, train
from inference.training.objectives import EnumeratedTrace_ELBO, KLWeighted, WithClassification

C, D = 3, 4
W = torch.tensor([[1.0, 0.5], [0.3, -1.0], [0.8, 0.8], [-0.5, 0.2]])
MEANS = torch.tensor([[2.0, 0.0, -1.0, 1.0], [-2.0, 1.0, 0.0, -1.0], [0.0, -2.0, 2.0, 0.0]])
SCALE = 0.7
PRECISION = torch.eye(2) + W.T @ W / SCALE**2
POSTERIOR_COV = torch.linalg.inv(PRECISION)
# q(y | x) = softmax(x A); a leaf with gradients, as Pyro differentiates only what has parameters
A = torch.tensor([[0.3, -0.2, 0.1], [1.0, 0.0, -1.0], [0.0, 0.5, 0.2], [-0.4, 0.1, 0.9]], requires_grad=True)


def classify(x):
    return x @ A


def model(x, y=None, mask=None):
    """M2 with a linear-Gaussian p(x | y, z) = N(W z + m_y, σ²I), as models.SemiSupervisedVAE
    writes its label site."""
    with pyro.plate("data", x.shape[0]):
        y = pyro.sample("y", dist.Categorical(logits=x.new_zeros(C)), obs=y, obs_mask=None if y is None else mask)
        z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T + MEANS[y], SCALE).to_event(1), obs=x)


def guide(x, y=None, mask=None):
    """q(y | x) fixed logits, q(z | x, y) the exact posterior p(z | x, y)."""
    with pyro.plate("data", x.shape[0]):
        q_y = dist.Categorical(logits=classify(x))
        with poutine.mask(mask=~mask):
            proposed = pyro.sample("y_unobserved", q_y)
        y = torch.where(mask, y, proposed)
        loc = (x - MEANS[y]) @ W @ POSTERIOR_COV / SCALE**2
        pyro.sample("z", dist.MultivariateNormal(loc, covariance_matrix=POSTERIOR_COV))


guide.classify = classify


def log_p_x_given_y(x):
    """(B, C): log N(x; m_c, W Wᵀ + σ²I) for every class."""
    return dist.MultivariateNormal(MEANS, W @ W.T + SCALE**2 * torch.eye(D)).log_prob(x[:, None, :])


def test_the_objective_is_the_hand_written_sum_over_classes_plus_the_classification_term():
    """Labelled points: log p(x, y); unlabelled: Σ_c q(c|x) log p(x, c) + H(q(·|x)), the ELBO of
    Kingma et al.'s eq. 7 with the exact posterior of z (so that it holds whatever z is drawn);
    plus α Σ_labelled log q(y|x)."""
    x = torch.randn(5, D) + MEANS[torch.tensor([0, 1, 2, 0, 1])]
    y, mask = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([True, False, True, False, False])
    joint = log_p_x_given_y(x) + math.log(1 / C)  # (B, C)
    q = torch.log_softmax(classify(x).detach(), -1)
    labelled = joint[mask, y[mask]].sum()
    unlabelled = ((q.exp() * (joint - q)).sum(-1))[~mask].sum()
    aux = q[mask, y[mask]].sum()
    objective = WithClassification(KLWeighted(EnumeratedTrace_ELBO, max_plate_nesting=None), aux_weight=2.5)
    loss = objective.differentiable_loss(model, guide, x, y=y, mask=mask)
    assert loss.item() == pytest.approx(-(labelled + unlabelled + 2.5 * aux).item(), rel=1e-5)


def test_log_px_with_y_summed_out_is_the_mixture_likelihood():
    """All labels unobserved (as valid and test points are): importance sampling with q(y|x)
    proposing y gives log Σ_c p(c) p(x | c), within 5/√ESS per point."""
    x = torch.randn(5, D) + MEANS[torch.tensor([0, 1, 2, 0, 1])]
    exact = torch.logsumexp(log_p_x_given_y(x) + math.log(1 / C), -1)
    estimate = importance_sampling(model, guide, x, 4000, seed=1, diagnose=True, extra={"y": torch.zeros(5, dtype=torch.long), "mask": torch.zeros(5, dtype=torch.bool)})
    assert ((estimate.log_px - exact).abs() * estimate.ess.sqrt()).max() < 5.0


def test_labels_of_unlabelled_points_never_reach_the_loss(tmp_path):
    from inference.runs.build import build
    from inference.data import digits

    cfg = compose_config(*TINY, *SMALL_NETS, "model=ss_vae", "guide=ss_vae", "data.num_labeled=50")
    data = digits(num_labeled=50)
    m2, q = build(cfg, data)
    x, (y, mask) = data.train[:40], data.batch_extra("train", ("y", "mask")).values()
    y, mask = y[:40], mask.clone()[:40]
    mask[::3] = True  # some labelled points in this batch
    other = torch.where(mask, y, (y + 1) % 10)
    losses = []
    for labels in (y, other):
        pyro.set_rng_seed(7)  # a fresh objective each time: its first call draws to find the plates
        objective = WithClassification(KLWeighted(EnumeratedTrace_ELBO, max_plate_nesting=None), aux_weight=1.0)
        losses.append(objective.differentiable_loss(m2, q, torch.bernoulli(x), y=labels, mask=mask))
    assert not torch.equal(y, other)
    assert torch.equal(losses[0], losses[1])


def test_the_supervised_only_baseline_learns_the_kept_labels_alone_from_a_fresh_network():
    from dataclasses import replace
    from functools import partial

    from guides import SemiSupervisedGuide
    from inference.data import digits
    from inference.evaluations.accuracy import accuracy
    from inference.training.supervised import supervised_only
    from models import MLP

    data = digits(num_labeled=50)
    y, mask = data.batch_extra("train", ("y", "mask")).values()
    guide = SemiSupervisedGuide(partial(MLP, hidden=[32]), x_dim=64, z_dim=4)
    before = [p.clone() for p in guide.parameters()]
    networks = []
    for labels in (y, torch.where(mask, y, (y + 1) % 10)):  # the unlabelled points' labels changed
        pyro.set_rng_seed(3)
        networks.append(supervised_only(guide.classifier, replace(data, labels={**data.labels, "train": labels}), steps=500))
    assert all(torch.equal(a, b) for a, b in zip(before, guide.parameters()))  # the guide's own classifier untouched
    assert not any(torch.equal(a, b) for a, b in zip(before, networks[0].parameters()))  # a fresh one
    assert all(torch.equal(a, b) for a, b in zip(networks[0].parameters(), networks[1].parameters()))  # no label leaked
    assert accuracy(networks[0], data.train[mask].round(), y[mask]) == 1.0  # 50 points, 500 steps: learned
    assert accuracy(networks[0], data.test, data.labels["test"]) > 0.5  # chance is 0.1


def test_the_ss_digits_preset_reports_both_accuracies_and_draws_the_class_figures(tmp_path):
    """The baseline runs under its own RNG: every other number is the same without it."""
    overrides = [*TINY, *SMALL_NETS, "experiment=ss_digits", "evaluation.figures=true", "evaluation.supervised_only_steps=500"]
    metrics = train(compose_config(*overrides), tmp_path / "with")
    alone = metrics["test"]["accuracy_supervised_only"]
    assert f"  same network, labels alone   {alone:10.4f}" in summary(metrics, tmp_path / "with")
    assert 0.3 < alone <= 1  # 32 test points; chance is 0.1
    for name in ("class_analogies.png", "latent_by_class.png", "training_curve.png"):
        assert (tmp_path / "with" / "plots" / name).stat().st_size > 0
    without = train(compose_config(*overrides, "evaluation.supervised_only_steps=0", "evaluation.figures=false"), tmp_path / "without")
    assert "accuracy_supervised_only" not in without["test"]
    for split in ("valid", "test"):
        assert without[split]["accuracy"] == metrics[split]["accuracy"]
        assert without[split]["log_px"]["mean"] == metrics[split]["log_px"]["mean"]


def test_a_run_on_the_digits_with_fifty_labels_reports_accuracy(tmp_path):
    cfg = compose_config(*TINY, *SMALL_NETS, "model=ss_vae", "guide=ss_vae", "objective=ss_elbo", "data.num_labeled=50", "data.binarize=fixed")
    metrics = train(cfg, tmp_path)
    assert f"test accuracy of q(y|x)        {metrics['test']['accuracy']:10.4f}" in summary(metrics, tmp_path)
    data, _, guide = checkpoint_programs(cfg, tmp_path)
    for split in ("valid", "test"):
        assert_run_estimates_its_programs(cfg, tmp_path, split)
        # the accuracy of the checkpoint's classifier on the split's first 32 points, as counted here
        x, y = data.split(split)[:32], data.labels[split][:32]
        with torch.no_grad():
            counted = (guide.classify(x).argmax(-1) == y).float().mean().item()
        assert metrics[split]["accuracy"] == pytest.approx(counted)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["model=ss_vae", "guide=ss_vae", "objective=ss_elbo", "prior=vamp", "data.num_labeled=50"],
            r"VampPrior needs a guide with diagonal Gaussian posteriors of x alone.*SemiSupervisedGuide has none \(use guide=normal, or another prior\)",
        ),
        (["objective=ss_elbo"], r"objective=ss_elbo adds the classification term -log q\(y\|x\), but guide=\w+ has no classifier"),
        (["model=ss_vae", "guide=ss_vae", "objective=ss_elbo"], r"take 'mask' per data point \(batch keys\), but data=digits does not provide it: .*data.num_labeled=N"),
        (["model=ss_vae", "objective=ss_elbo", "data.num_labeled=50"], r"the model takes x and y, mask per data point, but the guide takes x alone.*guide=ss_vae for model=ss_vae"),
        (["experiment=ss_digits", "data.labeled_per_batch=64"], r"data.labeled_per_batch=64.*fewer than train.batch_size=64, to leave room for unlabelled points"),
        (["experiment=ss_digits", "evaluation.supervised_only_steps=-1"], r"evaluation.supervised_only_steps.*a non-negative integer"),
    ],
)
def test_bad_semi_supervised_settings_are_refused_at_start(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train(compose_config(*TINY, *SMALL_NETS, *overrides), tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()
