"""Objective identities: the weighted ELBO against hand-computed traces, IWAE(K=1) against the ELBO."""

import math
from functools import partial

import pyro
import pytest
import torch
import pyro.distributions as dist
from pyro import poutine
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
    objective.loss_and_grads(model, guide, x)
    assert all(p.grad is not None for p in guide.parameters())


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
        loss = LeanTrace_ELBO().differentiable_loss(model, guide, x)
        assert len(pyro.get_param_store()) == 0
        loss.backward()  # the gradients reach the modules all the same
        assert all(p.grad is not None for p in [*model.parameters(), *guide.parameters()])
        Trace_ELBO().differentiable_loss(model, guide, x)
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
    with pyro.validation_enabled(False):
        for epoch in (0, 1, 1, 2):
            recorded.set_epoch(epoch), eager.set_epoch(epoch)
            assert torch.allclose(same_draws(recorded, model, guide, x), same_draws(eager, model, guide, x))
    assert len(recorded.loss._graphs) == 3  # weights 0, 0.5 (recorded once) and 1


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
