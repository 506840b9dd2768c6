"""The step captured as a CUDA graph (``train.cuda_graphs``): what is refused at start, the
optimizer made capturable, and, where CUDA is present, a captured step that gives the numbers
of the uncaptured one, reads its learning rate from the tensor schedules fill, and reports a
non-finite step as the uncaptured one does."""

from functools import partial

import pyro
import pytest
import torch

from conftest import TINY, compose_config
from guides import AmortizedNormal
from inference.training import ElboStep, NonFiniteError, parameters_of
from inference.training.capture import capturable
from inference.training.objectives import GraphTrace_ELBO
from inference.training.schedules import iwae
from models import MLP, VAE, Bernoulli, StandardNormal


def pair(device: str = "cpu"):
    pyro.set_rng_seed(0)
    model = VAE(StandardNormal(3), MLP(3, 8, hidden=[16]), Bernoulli()).to(device)
    guide = AmortizedNormal(partial(MLP, hidden=[16]), x_dim=8, z_dim=3).to(device)
    return model, guide


@pytest.mark.parametrize(
    "overrides, message",
    [
        # the objective by its config name under Hydra; composed here, by its class
        (["objective=iwae"], r"objective=\w+ is not recorded as a graph, which a capture needs; use objective=trace_elbo"),
        (["objective.num_particles=3"], r"objective.num_particles=3: only a one-particle ELBO is recorded as a graph"),
        (["objective=graph_trace_elbo", "optim=adagrad"], r"Adagrad \(fused=None\) cannot step inside a CUDA graph; use optim=adam with optim.fused=true"),
        (["objective=graph_trace_elbo", "optim.fused=false"], r"Adam \(fused=False\) cannot step inside a CUDA graph"),
        (["objective=graph_trace_elbo", "train.validate=true"], r"validation is on \(train.validate=true, .*use train.validate=false"),
        (["objective=graph_trace_elbo", "train.finite_check=every_step"], "train.finite_check=every_step reads a flag back every step"),
        (["objective=graph_trace_elbo", "guide=semi_amortized"], r"guide=\w+ cannot be recorded or captured \(it takes gradients inside the guide\); use train.cuda_graphs=false"),
        (["objective=graph_trace_elbo"], "CUDA graphs need CUDA, and the run trains on cpu; use train.cuda_graphs=auto"),
        ([], "CUDA graphs need CUDA, and the run trains on cpu; use train.cuda_graphs=auto"),
    ],
)
def test_cuda_graphs_true_is_refused_at_start_where_the_step_cannot_be_captured(overrides, message, tmp_path):
    from inference.runs.training_run import train

    with pytest.raises(ValueError, match=f"train.cuda_graphs=true captures each training step as a CUDA graph, but {message}"):
        train(compose_config(*TINY, "train.cuda_graphs=true", *overrides), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    "overrides, objective, logged",
    [
        ([], GraphTrace_ELBO, "train.cuda_graphs=auto: the lean Trace_ELBO (objective=trace_elbo) is recorded as a graph (graph_trace_elbo: the same loss and gradients)"),
        (["objective.warmup_epochs=4"], GraphTrace_ELBO, "(objective=trace_elbo) is recorded as a graph"),
        (["objective=graph_trace_elbo"], GraphTrace_ELBO, None),
        (["train.cuda_graphs=false"], None, None),
        (["objective=iwae"], None, "is not recorded as a graph, which a capture needs; use objective=trace_elbo"),  # named by class outside Hydra
        (["optim.fused=false"], None, "the step is not captured: Adam (fused=False) cannot step inside a CUDA graph"),
        (["guide=semi_amortized"], None, "cannot be recorded or captured (it takes gradients inside the guide)"),
    ],
)
def test_on_cuda_the_default_run_captures_its_step_through_the_recorded_objective(overrides, objective, logged, caplog):
    """Which step a run takes on CUDA (decided from the device's type, so it is checked here
    without one): the default objective is swapped for its recorded form with its KL weight and
    warm-up kept, and where the step cannot be captured the objective stays and one line says why."""
    from inference.runs import instantiate
    from inference.runs.build import prepared
    from inference.runs.training_run import use_cuda_graphs

    cfg = compose_config(*TINY, *overrides)
    data = instantiate(cfg.data)
    model, guide = prepared(cfg, data, torch.device("cpu"))
    optimizer = instantiate(cfg.optim)(parameters_of(model, guide))
    configured = instantiate(cfg.objective)
    with caplog.at_level("INFO", logger="inference.runs.training_run"):
        loss, capture = use_cuda_graphs(cfg, torch.device("cuda"), configured, optimizer, model, guide)
    assert capture == (objective is not None)
    if objective is None:
        assert loss is configured
    else:
        assert type(loss.loss) is objective and (loss.beta, loss.warmup_epochs, loss.weight) == (configured.beta, configured.warmup_epochs, configured.weight)
    lines = [r.getMessage() for r in caplog.records if "train.cuda_graphs" in r.getMessage()]
    assert (logged is None and not lines) or (len(lines) == 1 and logged in lines[0])


def test_the_recorded_default_objective_gives_its_loss_and_gradients():
    """``KLWeighted.recorded`` of the default objective, with a KL weight of ½ (β), against the
    objective itself: the same loss and gradients from the same draws."""
    from inference.runs import instantiate

    configured = instantiate(compose_config(*TINY, "objective.beta=0.5").objective)
    recorded = configured.recorded()
    x = torch.randint(0, 2, (16, 8)).float()
    results = []
    with pyro.validation_enabled(False):
        for loss in (configured, recorded):
            model, guide = pair()
            pyro.set_rng_seed(1)
            value = loss.differentiable_loss(model, guide, x)
            value.backward()
            results.append((value.detach(), [p.grad.clone() for p in parameters_of(model, guide)]))
    (eager, eager_grads), (replayed, replayed_grads) = results
    assert type(recorded.loss) is GraphTrace_ELBO and recorded.weight == 0.5
    assert torch.allclose(eager, replayed, rtol=1e-6) and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(eager_grads, replayed_grads))


def test_a_capturable_optimizer_steps_as_before_from_a_rate_that_schedules_fill_in_place():
    """capturable() changes where the rate lives, not the step: the same updates as the fused
    Adam it was, and the iwae schedule's rates land in the one tensor a graph would read."""
    updated = []
    for make_capturable in (False, True):
        model, guide = pair()
        optimizer = torch.optim.Adam(parameters_of(model, guide), lr=1e-2, fused=True)
        schedule = iwae(optimizer)
        if make_capturable:
            capturable(optimizer)
            rate = optimizer.param_groups[0]["lr"]
        step = ElboStep(model, guide, optimizer, deferred=True)
        x = torch.randint(0, 2, (16, 8)).float()
        for epoch in range(5):  # stages of 1 and 3 epochs: the rate drops after epochs 1 and 4
            pyro.set_rng_seed(epoch)
            step(x)
            schedule.step()
        step.check()
        updated.append([p.detach().clone() for p in parameters_of(model, guide)])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*updated))
    assert optimizer.param_groups[0]["lr"] is rate and rate.item() == pytest.approx(1e-2 * 10 ** (-2 / 7))


@pytest.mark.cuda
def test_a_captured_step_gives_the_numbers_of_the_uncaptured_one():
    """Eight steps of the recorded objective on CUDA, captured (three real warm-up steps, the
    capture, then replays) and not: the same losses and parameters within reassociation."""
    x = torch.randint(0, 2, (32, 8)).float().cuda()
    runs = []
    for capture in (False, True):
        model, guide = pair("cuda")
        optimizer = capturable(torch.optim.Adam(parameters_of(model, guide), lr=1e-2, fused=True))
        step = ElboStep(model, guide, optimizer, GraphTrace_ELBO(), deferred=True, capture=capture)
        pyro.set_rng_seed(1)
        losses = [step(x).clone() for _ in range(8)]
        step.check()
        runs.append((torch.stack(losses), [p.detach().clone() for p in parameters_of(model, guide)]))
        if capture:
            assert any("graph" in entry for entry in step.graphs.graphs.values())
    (plain_losses, plain), (captured_losses, captured) = runs
    assert torch.allclose(captured_losses, plain_losses, rtol=1e-4, atol=1e-3)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(plain, captured))


@pytest.mark.cuda
def test_a_captured_step_reads_its_rate_and_reports_a_non_finite_step_as_the_uncaptured_one():
    """After the capture a rate filled with 0 stops the updates (the graph reads the tensor); a
    weight poisoned with NaN in place is caught by the deferred check, the bad replay and the
    ones after it change nothing, and the message names the same parameters."""
    x = torch.randint(0, 2, (32, 8)).float().cuda()
    messages = []
    for capture in (False, True):
        model, guide = pair("cuda")
        optimizer = capturable(torch.optim.Adam(parameters_of(model, guide), lr=1e-2, fused=True))
        step = ElboStep(model, guide, optimizer, GraphTrace_ELBO(), deferred=True, capture=capture)
        for _ in range(5):
            step(x)
        optimizer.param_groups[0]["lr"].fill_(0.0)
        before = [p.detach().clone() for p in parameters_of(model, guide)]
        step(x)
        step.check()
        assert all(torch.equal(a, p) for a, p in zip(before, parameters_of(model, guide)))
        optimizer.param_groups[0]["lr"].fill_(1e-2)
        with torch.no_grad():
            next(model.decoder.parameters())[0, 0] = float("nan")
        poisoned = [p.detach().clone() for p in parameters_of(model, guide)]
        with pytest.raises(NonFiniteError) as error:
            for _ in range(3):
                step(x)
            step.check()
        assert error.value.later_steps == 2
        assert all(torch.equal(a.nan_to_num(), p.nan_to_num()) for a, p in zip(poisoned, parameters_of(model, guide)))
        messages.append(str(error.value).split("; non-finite log-probabilities")[0])
    assert messages[0] == messages[1] and "non-finite gradients of model.decoder" in messages[0]
