"""The hand-written references of bench/ compute what the suite computes, so that the ratios in
the benchmarks pages compare like with like."""

import math

import pyro
import torch

from bench.common import binary_data, make_vae
from bench.estimator import handwritten_log_px
from bench.handwritten_vae import HandVAE, train_budgeted
from bench.ss_step import handwritten_ss_loss, labelled_data, make_m2, suite_loss
from bench.train_step import handwritten_loss
from inference.estimators import importance_sampling
from inference.training.objectives import LeanTrace_ELBO


def test_the_handwritten_estimator_estimates_the_suites_log_px():
    pyro.set_rng_seed(0)
    model, guide = make_vae(16, [32], 3, "Tanh")
    model.eval(), guide.eval()
    x = binary_data(40, 16)
    suite = importance_sampling(model, guide, x, 2000, chunk_size=5000, seed=1).log_px
    hand = handwritten_log_px(model, guide, x, 2000, chunk_size=5000)
    difference = suite - hand  # the points' true values cancel; what is left is Monte Carlo error
    assert abs(difference.mean()) < 4 * difference.std() / math.sqrt(len(x)) + 1e-3


def test_the_handwritten_training_loss_is_the_suites():
    """From the same random numbers, the hand-written step's loss and the suite's objective agree."""
    model, guide = make_vae(16, [32], 3, "Tanh")
    x = binary_data(8, 16)
    pyro.set_rng_seed(2)
    hand = handwritten_loss(model, guide, x)
    pyro.set_rng_seed(2)
    with pyro.validation_enabled(False):  # the objective as training runs use it
        suite = LeanTrace_ELBO().differentiable_loss(model, guide, x)
    assert torch.allclose(hand, suite, rtol=1e-5)


def test_the_handwritten_preset_trains_a_given_number_of_epochs_or_seconds():
    """Whole epochs until the count or the time budget is spent, each timed inside the call
    (so the seconds reported are at most the call's own), and the parameters move."""
    import time

    pyro.set_rng_seed(0)
    model = HandVAE(x_dim=16, hidden=(8,), z_dim=2)
    before = [p.detach().clone() for p in model.parameters()]
    start = time.perf_counter()
    epochs, seconds = train_budgeted(model, torch.rand(30, 16), lr=1e-3, batch_size=10, max_epochs=3)
    assert epochs == 3 and 0 < seconds <= time.perf_counter() - start
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # a budget: whole epochs until the time spent reaches it
    start = time.perf_counter()
    epochs, seconds = train_budgeted(model, torch.rand(300, 16), lr=1e-3, batch_size=10, max_seconds=0.2)
    elapsed = time.perf_counter() - start
    assert epochs >= 1 and 0.2 <= seconds <= elapsed


def test_slices_pool_into_the_mean_and_standard_error_of_all_points():
    from bench.end_to_end import pooled
    from inference.estimators.metrics import mean_and_stderr

    values = torch.randn(103, generator=torch.Generator().manual_seed(0)) * 3 - 90
    mean, stderr = pooled([mean_and_stderr(part) for part in values.split(25)])
    whole = mean_and_stderr(values)
    assert math.isclose(mean, whole["mean"], rel_tol=1e-6) and math.isclose(stderr, whole["stderr"], rel_tol=1e-4)


def test_the_handwritten_m2_loss_estimates_the_suites():
    """bench.ss_step's hand-written M2 loss and objective=ss_elbo are both unbiased estimates of
    the same objective (the suite enumerates y in Pyro's order of draws, so not from the same
    random numbers): their means over many draws agree within Monte Carlo error. Leaving out a
    part (the entropy of q(y|x), the weight q(c|x), the classification term) moves the mean by
    tens of nats, far outside it."""
    pyro.set_rng_seed(0)
    model, guide = make_m2(x_dim=16, hidden=32, z_dim=3)
    data = labelled_data(40, 16, num_labeled=10, per_batch=4, device=torch.device("cpu"))
    extra = data.batch_extra("train", ("y", "mask"))
    x, y, mask = data.train, extra["y"], extra["mask"]
    draws = 300
    loss = suite_loss(aux_weight=3.0)
    with pyro.validation_enabled(False):  # the objective as training runs use it
        suite = torch.stack([loss.differentiable_loss(model, guide, x, y=y, mask=mask).detach() for _ in range(draws)])
    hand = torch.stack([handwritten_ss_loss(model, guide, x, y, mask, aux_weight=3.0).detach() for _ in range(draws)])
    assert abs(suite.mean() - hand.mean()) < 4 * math.sqrt((suite.var() + hand.var()) / draws)


def test_the_handwritten_fused_adam_trains_as_its_plain_adam():
    """The benchmarks' two hand-written columns differ in the optimizer's kernel only: from the
    same start and draws, an epoch of each leaves the same parameters up to rounding."""
    from bench.handwritten_vae import HandTraining

    trained = []
    for fused in (False, True):
        pyro.set_rng_seed(0)
        model = HandVAE(x_dim=16, hidden=(8,), z_dim=2)
        HandTraining(model, torch.rand(40, 16), lr=1e-2, batch_size=10, fused=fused).epoch()
        trained.append(list(model.parameters()))
    pyro.set_rng_seed(0)
    start = HandVAE(x_dim=16, hidden=(8,), z_dim=2)  # where both began
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*trained))
    assert not any(torch.allclose(a, b) for a, b in zip(trained[0], start.parameters()))  # it trained


def test_the_law_oracles_particle_filter_estimates_the_evidence_that_sampling_the_prior_does():
    """bench.law_oracle's filter (a grid proposal for the first angle, phases by quadrature,
    resampling) against plain importance sampling from the prior, on frames noisy enough
    (pixel noise 0.5) that 200,000 prior draws estimate log p(x₁:₃) to a few hundredths; the
    tolerance is four standard errors of the two, from their own spread."""
    from bench.law_oracle import LAWS, angle_grid, evidence, frame_log_likelihood
    from inference.data.pendulum import observed, simulate
    from models.physics import PhysicsTransition

    size, noise, T = 8, 0.5, 3
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    frames, _ = observed(simulate(2, T, generator=g).double(), size, noise, g)
    law = PhysicsTransition(2, 0.1, **LAWS["physics_detuned"]).double().requires_grad_(False)

    grids = angle_grid(frames, size, noise)
    filtered = torch.stack([evidence(law, frames, grids, size, noise, phases=8, particles=256, seed=seed) for seed in range(5)])
    n = 200_000
    z = torch.stack([(torch.rand(n, dtype=torch.float64) * 2 - 1) * math.pi, (torch.rand(n, dtype=torch.float64) * 2 - 1) * 2], -1)
    phase = torch.rand(n, dtype=torch.float64) * 2 * math.pi
    for sequence, estimates in zip(frames, filtered.T):
        log_w, state = frame_log_likelihood(z[:, 0], sequence[0], size, noise), z
        for t in range(1, T):
            state = law.step(state, t - 1, phase, law.amplitude).sample()
            log_w = log_w + frame_log_likelihood(state[:, 0], sequence[t], size, noise)
        sampled = torch.logsumexp(log_w, 0) - math.log(n)
        w = (log_w - log_w.max()).exp()
        sampled_var = (w.var() / w.mean() ** 2 / n).item()  # the delta method's variance of log p̂
        filter_var = estimates.var().item()  # of one filter's log p̂; the log of an unbiased p̂ lies about var/2 low
        tolerance = 4 * math.sqrt(sampled_var + filter_var / len(estimates)) + filter_var / 2
        assert sampled_var < 0.05**2 and filter_var < 0.5**2
        assert abs(estimates.mean() - sampled) < tolerance, (estimates, sampled, tolerance)
