"""Every guide × objective pair trains a few steps towards the exact log p(x); the full-rank
guide's covariance; the prior guide proposes from the prior."""

import contextlib
import math
from functools import partial

import pyro
import pytest
import torch
from pyro import poutine

from conftest import CONF, SHORT_SEQUENCES, TINY, assert_not_above_within_monte_carlo, assert_same_within_monte_carlo, compose_config
from guides import AmortizedFullRank, PriorGuide
from inference.estimators import importance_sampling
from inference.runs import instantiate
from inference.runs.build import prepared
from inference.runs.rundir import read_per_point
from inference.train import train
from inference.training.checkpoint import load_checkpoint
from models import MLP, StandardNormal
from models.capabilities import capabilities_of

# guide=sequence trains with model=state_space; guide=hierarchical belongs to model=hierarchical, guide=program to model=program (test_program_runs.py),
# guide=ss_vae and objective=ss_elbo to model=ss_vae (tests/models/test_ss_vae.py)
GUIDES = sorted(p.stem for p in (CONF / "guide").glob("*.yaml") if p.stem not in ("hierarchical", "program", "ss_vae"))
OBJECTIVES = sorted(p.stem for p in (CONF / "objective").glob("*.yaml") if p.stem != "ss_elbo")


# Each guide × objective trains on a model with an exact log p(x): the linear-Gaussian model (2-dim z,
# 10-dim x), and for guide=sequence linear-Gaussian sequences, whose log p(x₁:T) the Kalman filter gives.
LINEAR = [
    *(o for o in TINY if not o.startswith("z_dim")), "experiment=linear_gaussian", "train.epochs=3", "encoder.hidden=[32]",
    "evaluation.max_points=64", "evaluation.num_particles=16", "evaluation.splits=[test]",
]
SEQUENCES = [
    *TINY, "experiment=pendulum_sequences", *SHORT_SEQUENCES, "data.num_test=24", "evaluation.max_points=24",
    "transition=linear", "decoder=linear", "likelihood=gaussian", "train.epochs=10", "data.num_train=32", "evaluation.num_particles=64", "evaluation.forecast_horizon=0",
    "evaluation.splits=[test]",
]


def untrained_elbo(cfg, run_dir, x: torch.Tensor, num_particles: int) -> torch.Tensor:
    """Per point, the ELBO of the run's trained model with the guide as it was initialized (the
    run's seed): what training the guide must improve on."""
    pyro.set_rng_seed(cfg.train.seed)
    data = instantiate(cfg.data)
    model, guide = prepared(cfg, data, torch.device("cpu"))
    model.load_state_dict(load_checkpoint(run_dir)["model"])
    if not capabilities_of(guide).amortized:  # its parameters for these points, as initialized
        guide.add_points(x)
    with torch.no_grad():
        return importance_sampling(model.eval(), guide.eval(), x, num_particles=num_particles, seed=5).elbo


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated")
@pytest.mark.filterwarnings("ignore:.*:torch.jit.TracerWarning")
@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("guide", GUIDES)
def test_guide_and_objective_train_towards_the_exact_log_px(guide, objective, tmp_path):
    """Against the exact log p(x), per test point: the ELBO and log p̂ at or below it within
    Monte Carlo error (a guide whose log q is too low breaks that; one too high, the test below),
    and the trained guide's ELBO above the untrained guide's by three standard errors
    (a guide that does not learn breaks that). guide=prior has no parameters to learn: its
    log p̂ is the naive estimator's, within Monte Carlo error."""
    overrides = [*SEQUENCES, f"objective={objective}"] if guide == "sequence" else [*LINEAR, f"guide={guide}", f"objective={objective}"]
    if guide == "local":
        overrides.append("guide.fit_steps=100")
    if guide == "prior":  # its check reads the naive estimator, which TINY leaves out
        overrides.append("evaluation.prior_proposal=true")
    if objective in ("jit_trace_elbo", "graph_trace_elbo") and guide in ("semi_amortized", "local"):
        with pytest.raises(ValueError, match=f"cannot be traced by objective={objective}: .*; use objective=trace_elbo"):
            train(compose_config(*overrides), tmp_path)
        return
    cfg = compose_config(*overrides)
    # these guides have no discrete site: TraceEnum_ELBO trains them as Trace_ELBO would, and says so
    told = pytest.warns(UserWarning, match="the guide has no discrete sample site to enumerate") if objective == "trace_enum_elbo" else contextlib.nullcontext()
    with told:
        metrics = train(cfg, tmp_path)
    run = read_per_point(tmp_path)
    exact, elbo, log_px = (torch.as_tensor(run[f"test.{key}"], dtype=torch.float64) for key in ("log_px_exact", "elbo", "log_px"))
    n = len(exact)
    for name, estimate in (("ELBO", elbo), ("log p-hat", log_px)):
        assert_not_above_within_monte_carlo(estimate, exact, name)
    if guide == "prior":
        naive = torch.as_tensor(run["test.log_px_prior"], dtype=torch.float64)
        assert_same_within_monte_carlo(log_px, naive, "the prior guide's log p-hat against the naive estimator's")
        return
    x = instantiate(cfg.data).test[: cfg.evaluation.max_points]
    gain = elbo - untrained_elbo(cfg, tmp_path, x, metrics["test"]["log_px"]["num_particles"]).double()
    assert gain.mean() > 3 * gain.std() / math.sqrt(n), f"the ELBO gained {gain.mean():.4f} ± {gain.std() / math.sqrt(n):.4f} in training"


# The guides whose q(z|x) is a distribution of the encoder's output (guide.posterior(x)); the local
# guide's is the Normal guide's density with parameters per point, the prior guide's the prior's.
DENSITIES = ["full_rank", "iaf", "normal", "semi_amortized", "spline"]


@pytest.mark.parametrize("guide", DENSITIES)
def test_each_guides_density_integrates_to_one(guide):
    """∫ q(z|x) dz = 1 for three data points, estimated as the mean of q(z|x) / r(z) over 20,000
    draws z ~ r, a Student t (3 degrees of freedom, heavier-tailed than any q here) around q's
    draws, 1.5 times as wide (a standard error of about 0.007): within 4 standard errors. A
    density wrong by a constant in either direction fails, where the training grid above catches
    only a log q too low: a flow without its log-determinant integrates to about 1.10 (iaf) or
    0.95 (spline) at its initialization."""
    cfg = compose_config(*LINEAR, f"guide={guide}")
    data = instantiate(cfg.data)
    _, q_of = prepared(cfg, data, torch.device("cpu"))
    with torch.no_grad():
        for x in data.test[:3]:
            q = q_of.posterior(x.expand(20_000, -1))
            draws = q.sample()
            r = torch.distributions.Independent(torch.distributions.StudentT(3.0, draws.mean(0), 1.5 * draws.std(0)), 1)
            z = r.sample((len(draws),))
            ratio = (q.log_prob(z) - r.log_prob(z)).double().exp()
            mean, se = ratio.mean().item(), ratio.std().item() / math.sqrt(len(ratio))
            assert se < 0.02 and abs(mean - 1) < 4 * se, f"∫ q(z|x) dz = {mean:.4f} ± {se:.4f}"


def test_full_rank_guide_has_a_valid_cholesky_factor():
    guide = AmortizedFullRank(partial(MLP, hidden=[8]), x_dim=5, z_dim=3)
    q = guide.posterior(torch.randn(4, 5))
    L = q.scale_tril
    assert L.shape == (4, 3, 3) and torch.equal(L, L.tril())
    assert (L.diagonal(dim1=-2, dim2=-1) >= 1e-3).all()
    trace = poutine.trace(guide).get_trace(torch.randn(4, 5))
    assert trace.nodes["z"]["value"].shape == (4, 3)


def test_prior_guide_proposes_from_the_models_prior():
    prior = StandardNormal(2)
    guide = PriorGuide(prior)
    trace = poutine.trace(guide).get_trace(torch.zeros(500, 7))
    z = trace.nodes["z"]["value"]
    assert z.shape == (500, 2)
    assert abs(z.mean().item()) < 4 / math.sqrt(1000) and abs(z.std().item() - 1) < 0.1


def test_semi_amortized_refinement_raises_each_points_elbo():
    from guides import AmortizedNormal, SemiAmortizedNormal
    from inference.data import digits
    from inference.estimators import importance_sampling
    from models import VAE, Bernoulli

    model = VAE(StandardNormal(4), MLP(4, 64, hidden=[32]), Bernoulli())
    x = digits(binarize="fixed").test[:50]
    plain = SemiAmortizedNormal(partial(MLP, hidden=[32]), 64, 4, model, steps=0)
    refined = SemiAmortizedNormal(partial(MLP, hidden=[32]), 64, 4, model, steps=20)
    refined.load_state_dict(plain.state_dict())  # the same encoder: only the refinement differs
    before = importance_sampling(model, plain.eval(), x, num_particles=200).elbo
    after = importance_sampling(model, refined.eval(), x, num_particles=200).elbo
    gain = after - before
    assert gain.mean() > 3 * gain.std() / math.sqrt(len(gain)) and (gain > 0).float().mean() > 0.8
    # steps=0 is the amortized Normal guide itself
    amortized = AmortizedNormal(partial(MLP, hidden=[32]), 64, 4)
    amortized.load_state_dict(plain.state_dict())
    assert torch.allclose(amortized.posterior_params(x)[0], plain.posterior_params(x)[0])


def test_semi_amortized_needs_a_model_with_one_latent_site():
    from guides import SemiAmortizedNormal
    from models import HierarchicalVAE, Bernoulli

    model = HierarchicalVAE.build(StandardNormal(2), partial(MLP, hidden=[8]), Bernoulli(), x_dim=6, z1_dim=3, hidden=[4])
    guide = SemiAmortizedNormal(partial(MLP, hidden=[8]), 6, 2, model, steps=1)
    with pytest.raises(ValueError, match=r"refines one latent site 'z', but the model also samples \['z1', 'z2'\]"):
        guide.posterior_params(torch.zeros(3, 6))
