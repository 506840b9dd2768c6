"""Every guide × objective pair trains a few steps on the digits with a finite ELBO; the full-rank
guide's covariance; the prior guide proposes from the prior."""

import contextlib
import math
from functools import partial

import pytest
import torch
from pyro import poutine

from conftest import CONF, SHORT_SEQUENCES, SMALL_NETS, TINY, compose_config
from guides import AmortizedFullRank, PriorGuide
from inference.train import train
from models import MLP, StandardNormal

# guide=sequence trains with model=state_space; guide=hierarchical belongs to model=hierarchical, guide=program to model=program (test_program_runs.py),
# guide=ss_vae and objective=ss_elbo to model=ss_vae (tests/models/test_ss_vae.py)
GUIDES = sorted(p.stem for p in (CONF / "guide").glob("*.yaml") if p.stem not in ("hierarchical", "program", "ss_vae"))
OBJECTIVES = sorted(p.stem for p in (CONF / "objective").glob("*.yaml") if p.stem != "ss_elbo")


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated")
@pytest.mark.filterwarnings("ignore:.*:torch.jit.TracerWarning")
@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("guide", GUIDES)
def test_guide_and_objective_train(guide, objective, tmp_path):
    overrides = [*TINY, *SMALL_NETS, f"guide={guide}", f"objective={objective}", "data.binarize=fixed"]
    if guide == "sequence":  # the guide of sequence models, on short pendulum sequences
        overrides = [*TINY, *SMALL_NETS, "experiment=pendulum_sequences", *SHORT_SEQUENCES, f"objective={objective}"]
    if guide == "local":
        overrides.append("guide.fit_steps=300")
    if objective in ("jit_trace_elbo", "graph_trace_elbo") and guide in ("semi_amortized", "local"):
        with pytest.raises(ValueError, match=f"cannot be traced by objective={objective}: .*; use objective=trace_elbo"):
            train(compose_config(*overrides), tmp_path)
        return
    # these guides have no discrete site: TraceEnum_ELBO trains them as Trace_ELBO would, and says so
    told = pytest.warns(UserWarning, match="the guide has no discrete sample site to enumerate") if objective == "trace_enum_elbo" else contextlib.nullcontext()
    with told:
        metrics = train(compose_config(*overrides), tmp_path)
    assert math.isfinite(metrics["train"]["curve"][-1]["train_elbo"])
    assert math.isfinite(metrics["test"]["elbo"]) and math.isfinite(metrics["test"]["log_px"]["mean"])


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
