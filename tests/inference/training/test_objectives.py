"""Objective identities: the weighted ELBO against hand-computed traces, IWAE(K=1) against the ELBO."""

import math
from functools import partial
from pathlib import Path

import pyro
import pytest
import torch
import pyro.distributions as dist
from pyro import poutine
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pyro.infer import RenyiELBO, Trace_ELBO

from guides import AmortizedNormal
from inference.training.objectives import EnumeratedTrace_ELBO, GraphTrace_ELBO, KLWeighted, LeanTrace_ELBO
from models import MLP, VAE, Bernoulli, StandardNormal


@pytest.fixture
def pair():
    model = VAE(StandardNormal(3), MLP(3, 8, hidden=[16]), Bernoulli())
    guide = AmortizedNormal(partial(MLP, hidden=[16]), x_dim=8, z_dim=3)
    return model, guide, torch.randint(0, 2, (16, 8)).float()


def test_beta_one_without_warmup_is_trace_elbo_exactly(pair):
    model, guide, x = pair
    pyro.set_rng_seed(1)
    weighted = KLWeighted(Trace_ELBO, beta=1.0).differentiable_loss(model, guide, x)
    pyro.set_rng_seed(1)
    assert torch.equal(weighted, Trace_ELBO().differentiable_loss(model, guide, x))


@pytest.mark.parametrize("beta", [0.0, 0.5, 4.0])
def test_beta_weights_the_kl_term_only(pair, beta):
    model, guide, x = pair
    pyro.set_rng_seed(2)
    loss = KLWeighted(Trace_ELBO, beta=beta).differentiable_loss(model, guide, x)
    pyro.set_rng_seed(2)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    log_px_z = model_trace.nodes["x"]["fn"].log_prob(x).sum()
    kl = (guide_trace.nodes["z"]["fn"].log_prob(guide_trace.nodes["z"]["value"]) - model_trace.nodes["z"]["fn"].log_prob(model_trace.nodes["z"]["value"])).sum()
    assert torch.allclose(loss, -(log_px_z - beta * kl), atol=1e-4)


def test_warmup_rises_linearly_to_beta():
    objective = KLWeighted(Trace_ELBO, beta=2.0, warmup_epochs=10)
    weights = []
    for epoch in (0, 5, 10, 30):
        objective.set_epoch(epoch)
        weights.append(objective.weight)
    assert weights == [0.0, 1.0, 2.0, 2.0]


def test_iwae_with_one_particle_is_the_elbo_in_expectation(pair):
    model, guide, x = pair
    renyi, elbo = RenyiELBO(alpha=0, num_particles=1, max_plate_nesting=1), Trace_ELBO()
    a = torch.tensor([renyi.loss(model, guide, x) for _ in range(300)])
    b = torch.tensor([elbo.loss(model, guide, x) for _ in range(300)])
    se = math.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(a.mean() - b.mean()) < 4 * se


def test_iwae_objective_trains_through_loss_and_grads(pair):
    model, guide, x = pair
    objective = KLWeighted(partial(RenyiELBO, alpha=0), num_particles=5)
    assert not hasattr(objective, "differentiable_loss")  # the training step takes the other way
    parameters = [*model.parameters(), *guide.parameters()]
    objective.loss_and_grads(model, guide, x)  # a first call traces the programs once more, to find their plates
    for p in parameters:
        p.grad = None
    pyro.set_rng_seed(1)
    before = objective.loss_and_grads(model, guide, x)
    grads = [p.grad.clone() for p in parameters]
    # a small step down the gradients it left, then the same draws again (common random numbers):
    # the loss falls by about step·|grad|², which zero, random or sign-flipped gradients do not do
    step = 1e-3
    with torch.no_grad():
        for p, g in zip(parameters, grads):
            p -= step * g
    pyro.set_rng_seed(1)
    after = objective.loss.loss(model, guide, x)  # the wrapped RenyiELBO's estimate, weight 1
    squared = sum((g**2).sum() for g in grads).item()
    assert squared > 0 and before - after > 0.5 * step * squared


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="needs beta ≥ 0, warmup_epochs ≥ 0 and num_particles ≥ 1"):
        KLWeighted(Trace_ELBO, beta=-1)


def small_hierarchical():
    from guides import HierarchicalGuide
    from models import HierarchicalVAE

    model = HierarchicalVAE.build(StandardNormal(2), partial(MLP, hidden=[16]), Bernoulli(), x_dim=8, z1_dim=4, hidden=[8])
    return model, HierarchicalGuide(partial(MLP, hidden=[16]), x_dim=8, z_dim=2, z1_dim=4, hidden=[8])


@pytest.mark.parametrize("beta", [1.0, 0.5])
@pytest.mark.parametrize("kind", ["vae", "hierarchical"])
def test_the_lean_path_gives_trace_elbos_loss_and_gradients(pair, kind, beta):
    model, guide, x = pair
    if kind == "hierarchical":
        model, guide = small_hierarchical()
    results = []
    with pyro.validation_enabled(False):  # the lean path is taken only without validation
        for elbo in (Trace_ELBO, LeanTrace_ELBO, GraphTrace_ELBO):
            objective = KLWeighted(elbo, beta=beta)
            objective.differentiable_loss(model, guide, x)  # Trace_ELBO's first call draws to guess plate nesting
            pyro.set_rng_seed(3)
            loss = objective.differentiable_loss(model, guide, x)
            grads = torch.autograd.grad(loss, list(model.parameters()) + list(guide.parameters()))
            results.append((loss, grads))
    (loss, grads), *lean = results
    for lean_loss, lean_grads in lean:  # the lean path, eager and recorded (replayed here)
        assert torch.allclose(lean_loss, loss, rtol=1e-6, atol=1e-5)
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(lean_grads, grads))


def test_the_lean_path_leaves_the_param_store_alone(pair):
    """The training step optimizes the modules' own parameters, so the lean path skips the
    per-parameter messages of pyro.module; Trace_ELBO, and the lean path's fallbacks, register."""
    model, guide, x = pair
    pyro.clear_param_store()
    with pyro.validation_enabled(False):
        pyro.set_rng_seed(0)
        loss = LeanTrace_ELBO().differentiable_loss(model, guide, x)
        assert len(pyro.get_param_store()) == 0
        loss.backward()  # the gradients reach the modules all the same: Trace_ELBO's, from the same draws
        parameters = [*model.parameters(), *guide.parameters()]
        lean = [p.grad.clone() for p in parameters]
        pyro.set_rng_seed(0)
        grads = torch.autograd.grad(Trace_ELBO().differentiable_loss(model, guide, x), parameters)
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(lean, grads))
        assert "model$$$decoder.0.weight" in pyro.get_param_store() and "guide$$$encoder.0.weight" in pyro.get_param_store()
    pyro.clear_param_store()
    with pyro.validation_enabled(True):  # the fallback is Trace_ELBO as it is
        LeanTrace_ELBO().differentiable_loss(model, guide, x)
        assert "model$$$decoder.0.weight" in pyro.get_param_store()


def same_draws(objective, model, guide, x, seed=0):
    pyro.set_rng_seed(seed)
    return objective.differentiable_loss(model, guide, x)


def test_a_recording_draws_what_the_lean_path_draws(pair):
    """Each batch shape is recorded once (the recording gives back the random numbers it drew)
    and replayed with fresh draws from the same stream as the lean path."""
    model, guide, x = pair
    recorded = GraphTrace_ELBO()
    with pyro.validation_enabled(False):
        for batch in (x, x[:5], x, x[:5]):
            assert torch.equal(same_draws(recorded, model, guide, batch), same_draws(LeanTrace_ELBO(), model, guide, batch))
        assert len(recorded._graphs) == 2
        pyro.set_rng_seed(0)
        first, second = recorded.differentiable_loss(model, guide, x), recorded.differentiable_loss(model, guide, x)
        assert not torch.equal(first, second)  # the draws are operations of the graph, not constants


def test_a_new_kl_weight_is_recorded_anew(pair):
    model, guide, x = pair
    recorded, eager = KLWeighted(GraphTrace_ELBO, warmup_epochs=2), KLWeighted(LeanTrace_ELBO, warmup_epochs=2)
    losses = []
    with pyro.validation_enabled(False):
        for epoch in (0, 1, 1, 2):
            recorded.set_epoch(epoch), eager.set_epoch(epoch)
            assert torch.allclose(same_draws(recorded, model, guide, x), same_draws(eager, model, guide, x))
            losses.append(recorded.loss)
    # a new loss, and so a new recording, for each of the weights 0, 0.5 and 1; the same within a weight
    assert losses[1] is losses[2] and len({id(loss) for loss in losses}) == 3 and len(losses[1]._graphs) == 1


def test_a_guide_without_reparameterized_samples_is_not_recorded(pair):
    """Trace_ELBO's surrogate for score-function terms reads a value back, which a recording would fix."""
    import pyro.distributions as dist

    class NotReparameterized(dist.Normal):
        has_rsample = False

    model, guide, x = pair

    def plain_guide(x):
        loc, scale = guide.posterior_params(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", NotReparameterized(loc, scale).to_event(1))

    recorded, eager = GraphTrace_ELBO(), LeanTrace_ELBO()
    with pyro.validation_enabled(False):
        for _ in range(2):  # both hand the guide to Trace_ELBO, which guesses the plate nesting at its first call
            assert torch.equal(same_draws(recorded, model, plain_guide, x), same_draws(eager, model, plain_guide, x))
    assert [graph for _, _, graph in recorded._graphs.values()] == [None]


# A three-class mixture of Bernoulli images: model p(c) p(x|c), guide q(c|x), both small enough
# to write the enumerated loss by hand.
CLASS_PRIOR = torch.tensor([0.2, 0.5, 0.3])
CLASS_LOGITS = torch.randn(3, 6, generator=torch.Generator().manual_seed(1)).requires_grad_()  # a loss needs parameters
GUIDE_WEIGHTS = torch.randn(6, 3, generator=torch.Generator().manual_seed(2)).requires_grad_()


def mixture_model(x):
    with pyro.plate("data", x.shape[0]):
        c = pyro.sample("c", dist.Categorical(CLASS_PRIOR))
        pyro.sample("x", dist.Bernoulli(logits=CLASS_LOGITS[c]).to_event(1), obs=x)


def mixture_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("c", dist.Categorical(logits=x @ GUIDE_WEIGHTS))


@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_the_enumerated_objective_is_the_hand_written_sum_over_every_class(beta):
    x = torch.bernoulli(torch.full((5, 6), 0.4), generator=torch.Generator().manual_seed(3))
    loss = KLWeighted(EnumeratedTrace_ELBO, beta=beta, max_plate_nesting=None)
    log_q = torch.log_softmax(x @ GUIDE_WEIGHTS, -1)  # (5, 3)
    log_px_given_c = dist.Bernoulli(logits=CLASS_LOGITS[:, None, :]).log_prob(x).sum(-1).T  # (5, 3)
    by_hand = -(log_q.exp() * (log_px_given_c + beta * (CLASS_PRIOR.log() - log_q))).sum()
    with pyro.validation_enabled(False):
        assert torch.allclose(loss.differentiable_loss(mixture_model, mixture_guide, x), by_hand, rtol=1e-6)


def test_a_kl_weight_is_refused_where_the_model_enumerates_a_site():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Categorical(CLASS_PRIOR), infer={"enumerate": "parallel"})
            pyro.sample("x", dist.Bernoulli(logits=CLASS_LOGITS[c]).to_event(1), obs=x)

    def guide(x):
        pass

    loss = KLWeighted(EnumeratedTrace_ELBO, beta=0.5, max_plate_nesting=None)
    with pytest.raises(ValueError, match=r"the model enumerates \['c'\] itself.*objective.beta=1"):
        loss.differentiable_loss(model, guide, torch.ones(2, 6))
    # without a weight the model's own enumeration is Pyro's: log p(x) summed over c exactly
    exact = torch.logsumexp(CLASS_PRIOR.log() + dist.Bernoulli(logits=CLASS_LOGITS).log_prob(torch.ones(6)).sum(-1), 0)
    plain = KLWeighted(EnumeratedTrace_ELBO, max_plate_nesting=None).differentiable_loss(model, guide, torch.ones(2, 6))
    assert torch.allclose(plain, -2 * exact, rtol=1e-6)


# objective=ss_elbo is KLWeighted inside WithClassification, tested with model=ss_vae (tests/models/test_ss_vae.py)
OBJECTIVES = sorted(path.stem for path in (Path(__file__).resolve().parents[3] / "conf" / "objective").glob("*.yaml") if path.stem != "ss_elbo")


def _hand_written_loss(model, guide, x, weight: float, num_particles: int) -> float:
    """−Σ_points log (1/K) Σ_k exp(log p(x|z_k) + w·(log p(z_k) − log q(z_k|x))), z_k ~ q(z|x):
    the weighted ELBO for K = 1, the weighted IWAE bound otherwise (the pair's standard normal
    prior and Bernoulli decoder)."""
    with torch.no_grad():
        q = guide.posterior(x)
        z = q.sample((num_particles,))
        log_px_z = dist.Bernoulli(logits=model.decoder(z)).to_event(1).log_prob(x)
        log_pz = dist.Normal(0.0, 1.0).expand(z.shape[-1:]).to_event(1).log_prob(z)
        log_w = log_px_z + weight * (log_pz - q.log_prob(z))
        return -(torch.logsumexp(log_w, 0) - math.log(num_particles)).sum().item()


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated", "ignore:objective=trace_enum_elbo")
@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_weights_the_kl_term_of_each_epoch(pair, name):
    """Each objective's loss at epochs 0, 1 and 3 of a warm-up to β = 0.5 over 2 epochs (weights
    0, 0.25, 0.5) has the expectation of the hand-written weighted objective: the means of 100
    draws of each agree within four standard errors of their difference, while the weights'
    expectations lie many standard errors apart (about 20 at weights 0 and 0.5, so a warm-up one
    epoch off, a weight 0.25 away, shows by about 10)."""
    model, guide, x = pair
    config = OmegaConf.load(Path(__file__).resolve().parents[3] / "conf" / "objective" / f"{name}.yaml")
    objective = instantiate(config, beta=0.5, warmup_epochs=2)
    K, draws = config.num_particles, 100
    pyro.set_rng_seed(0)
    hand_means = []
    with pyro.validation_enabled(False):  # as runs train: the lean and recorded paths apply
        for epoch, weight in ((0, 0.0), (1, 0.25), (3, 0.5)):
            objective.set_epoch(epoch)
            if hasattr(objective, "differentiable_loss"):
                losses = torch.tensor([objective.differentiable_loss(model, guide, x).item() for _ in range(draws)])
            else:  # RenyiELBO: its loss comes with the gradients
                losses = torch.tensor([objective.loss_and_grads(model, guide, x) for _ in range(draws)])
            hand = torch.tensor([_hand_written_loss(model, guide, x, weight, K) for _ in range(draws)])
            se = math.sqrt(losses.var() / draws + hand.var() / draws)
            assert abs(losses.mean() - hand.mean()) < 4 * se, (epoch, losses.mean().item(), hand.mean().item(), se)
            hand_means.append((hand.mean().item(), math.sqrt(hand.var() / draws)))
    (first, se_first), (last, se_last) = hand_means[0], hand_means[-1]
    assert abs(last - first) > 10 * math.hypot(se_first, se_last)  # a weight left at 0 would show


def test_vectorized_particles_go_left_of_a_plate_inside_the_data_plate():
    """objective=iwae (particles vectorized) on a program with a pixel plate inside the data
    plate: with the exact posterior as guide every weight is p(x), so the loss is −Σ log p(x)
    whatever the draws. A particle plate put at the data plate's dimension would fail."""
    W, b, scale = torch.tensor([[1.0, 0.5], [0.3, -1.0], [0.8, 0.8]]), torch.tensor([0.1, -0.2, 0.3]), 0.7
    precision = torch.eye(2) + W.T @ W / scale**2
    posterior_cov = torch.linalg.inv(precision)

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            with pyro.plate("pixels", 3, dim=-1):
                pyro.sample("x", dist.Normal(z.squeeze(-2) @ W.T + b, scale), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("z", dist.MultivariateNormal(((x - b) @ W @ posterior_cov / scale**2).unsqueeze(-2), covariance_matrix=posterior_cov))

    x = torch.randn(7, 3)
    exact = dist.MultivariateNormal(b, W @ W.T + scale**2 * torch.eye(3)).log_prob(x).sum()
    config = OmegaConf.load(Path(__file__).resolve().parents[3] / "conf" / "objective" / "iwae.yaml")
    loss = instantiate(config).loss_and_grads(model, guide, x)
    assert loss == pytest.approx(-exact.item(), rel=1e-5)
