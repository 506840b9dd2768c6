"""The physics transition (``transition=physics``): the simulator's law with the simulator's
constants, the drive switched off by ``poutine.do``, constants that stay physical, constants
recovered from true states, and a run that reports the learned constants and the intervention."""

import math

import pytest
import torch
import pyro
from pyro import poutine
from torch import nn

from conftest import SHORT_SEQUENCES, TINY, assert_drawn, assert_run_estimates_its_programs, compose_config
from inference.data.pendulum import pendulum_sequences, simulate
from models import Gaussian, PhysicsTransition, StandardNormal, StateSpaceModel
from models.physics import CONSTANTS

SIMULATOR = pendulum_sequences(num_train=1, num_valid=0, num_test=1, frames=2, size=4).simulator
TRUE = SIMULATOR.constants
B, FRAMES = 6, 25
# the preset on short sequences of small frames (its decoder, decoder=rotating, has no hidden layers to shrink)
PHYSICS_RUN = ["experiment=pendulum_dynamics", *SHORT_SEQUENCES, "z_dim=2", "guide.rnn_hidden=16"]


def true_trajectories(seed: int = 0, **law):
    """B simulated trajectories from random states and phases, with the simulator's constants
    except those given in ``law``: their states ``(B, FRAMES, 2)`` and phases ``(B,)``."""
    g = torch.Generator().manual_seed(seed)
    initial = torch.stack([(torch.rand(B, generator=g) * 2 - 1) * math.pi, (torch.rand(B, generator=g) * 2 - 1) * 2], -1)
    phase = torch.rand(B, generator=g) * 2 * math.pi
    constants = {**TRUE, **law}
    states = simulate(B, FRAMES, stride=SIMULATOR.stride, dt=SIMULATOR.dt, initial=initial, phase=phase, **constants)
    return states, phase


def at_the_true_constants(substeps: int | None = None, **rival) -> StateSpaceModel:
    """A state-space model whose transition has the simulator's constants and next to no noise
    (of the rival law that ``rival``'s options of the transition make it)."""
    transition = PhysicsTransition(2, SIMULATOR.frame_interval, initial=TRUE, velocity_noise=1e-7, angle_noise=1e-7, substeps=substeps, **rival)
    return StateSpaceModel(StandardNormal(2), transition, nn.Linear(2, 4), Gaussian(0.1, scale_mode="fixed")).double()


def phase_vector(phase: torch.Tensor) -> torch.Tensor:
    """A draw of the site drive_phase_vector whose angle is ``phase`` (any length: only the angle counts)."""
    return 1.7 * torch.stack([phase.cos(), phase.sin()], -1).double()


@pytest.mark.parametrize("substeps, tolerance", [(None, 1e-5), (1, 2e-3)])
def test_with_the_true_constants_and_no_noise_the_transition_is_the_simulator(substeps, tolerance):
    """With the simulator's steps (the default) to rounding; with one Runge–Kutta step per frame
    (the pendulum_dynamics preset) to the integrator's error, 3e-4 rad and 1e-3 rad/s here."""
    states, phase = true_trajectories()
    rollout = at_the_true_constants(substeps)
    rolled = rollout.roll_forward(states[:, 0].double(), 0, FRAMES - 1, {"drive_phase_vector": phase_vector(phase)})
    assert torch.stack(rolled, 1).float() == pytest.approx(states[:, 1:], abs=tolerance)
    # the phase matters: a quarter-period off, the same start gives another trajectory
    shifted = rollout.roll_forward(states[:, 0].double(), 0, FRAMES - 1, {"drive_phase_vector": phase_vector(phase + math.pi / 2)})
    assert (torch.stack(shifted, 1).float() - states[:, 1:]).abs().max() > 0.05


def test_data_simulated_from_the_law_follow_the_simulator_from_the_drawn_state_and_phase():
    """simulated() (BDMC's data, the figures' draws) on the law: its drive amplitude, a
    pyro.deterministic site, stays one per sequence, and the drawn states are the simulator's
    from the drawn first state and phase."""
    from inference.estimators.programs import simulated

    model = at_the_true_constants()
    trace, x, _ = simulated(model, torch.zeros(B, FRAMES, 4, dtype=torch.float64))
    assert x.shape == (B, FRAMES, 4) and trace.nodes["drive_amplitude"]["value"].shape == (B,)
    drawn = torch.stack([trace.nodes[f"z_{t + 1}"]["value"] for t in range(FRAMES)], 1)
    phase = PhysicsTransition.phase(trace.nodes["drive_phase_vector"]["value"])
    initial = drawn[:, 0].float()
    states = simulate(B, FRAMES, stride=SIMULATOR.stride, dt=SIMULATOR.dt, initial=initial, phase=phase.float(), **TRUE)
    assert drawn.float() == pytest.approx(states, abs=1e-4)


def test_the_drive_switched_off_by_poutine_do_is_the_simulator_with_no_drive():
    driven, phase = true_trajectories()
    undriven, _ = true_trajectories(drive_amplitude=0.0)
    rollout = at_the_true_constants()
    latents = {"drive_phase_vector": phase_vector(phase)}
    switched_off = poutine.do(rollout.roll_forward, data={"drive_amplitude": torch.tensor(0.0)})(driven[:, 0].double(), 0, FRAMES - 1, latents)
    assert torch.stack(switched_off, 1).float() == pytest.approx(undriven[:, 1:], abs=1e-5)
    assert (undriven - driven).abs().max() > 0.1  # the drive moves the pendulum: the test can fail


@pytest.mark.parametrize(
    "rival, law",
    [({"damping": "zero"}, {"damping": 0.0}), ({"drive": "zero"}, {"drive_amplitude": 0.0}), ({"drive_frequency": 2.0}, {"drive_frequency": 2.0})],
)
def test_each_rival_law_is_the_simulator_of_that_law_and_learns_only_its_own_constants(rival, law):
    """transition.damping=zero, drive=zero and drive_frequency=2: the rollout from the true
    states is the simulator's with γ = 0, A = 0 or Ω = 2, and far from the true law's; what the
    law fixes is no parameter, and an undriven law has no drive phase to infer (no site, no
    guide head, no intervention)."""
    from guides import SequenceGuide

    states, phase = true_trajectories(**law)
    model = at_the_true_constants(**rival)
    latents = {"drive_phase_vector": phase_vector(phase)} if "drive" not in rival else {}
    rolled = torch.stack(model.roll_forward(states[:, 0].double(), 0, FRAMES - 1, latents), 1).float()
    assert rolled == pytest.approx(states[:, 1:], abs=1e-5)
    true_law, _ = true_trajectories()
    assert (true_law - states).abs().max() > 0.1  # the rival's motion is another: the test can fail

    parameters = {name for name, _ in model.transition.named_parameters()}
    fixed = {"damping": {"log_damping"}, "drive": {"amplitude", "log_drive_frequency"}, "drive_frequency": {"log_drive_frequency"}}[next(iter(rival))]
    assert not parameters & fixed and fixed <= set(model.transition.state_dict())
    learned = model.transition.constants()
    assert all(learned[name] == pytest.approx(value) for name, value in law.items())
    sites = poutine.trace(model).get_trace(torch.zeros(2, 3, 4, dtype=torch.float64)).nodes
    assert ("drive_phase_vector" in sites) is ("drive" not in rival) and ("drive_amplitude" in model.capabilities.intervenable) is ("drive" not in rival)
    guide = SequenceGuide(x_dim=4, z_dim=2, rnn_hidden=8, model=model.float(), follow_transition=True)
    assert ("drive_phase_vector" in guide.sequence_latents) is ("drive" not in rival)


def test_the_small_angle_law_is_the_linear_oscillator():
    """transition.small_angle=true with no damping and no drive: θ(t) = θ₀ cos(wt) + (ω₀/w) sin(wt),
    w = √(g/ℓ), the closed form of θ'' = −(g/ℓ) θ; the pendulum's law from the same large swings
    is far from it."""
    states, _ = true_trajectories()
    start = states[:, 0].double()
    model = at_the_true_constants(small_angle=True, damping="zero", drive="zero")
    rolled = torch.stack(model.roll_forward(start, 0, FRAMES - 1, {}), 1)
    w = math.sqrt(TRUE["gravity_over_length"])
    t = torch.arange(1, FRAMES, dtype=torch.float64) * SIMULATOR.frame_interval
    theta = start[:, :1] * torch.cos(w * t) + start[:, 1:] / w * torch.sin(w * t)
    omega = -start[:, :1] * w * torch.sin(w * t) + start[:, 1:] * torch.cos(w * t)
    assert rolled[..., 0] == pytest.approx(theta, abs=1e-4) and rolled[..., 1] == pytest.approx(omega, abs=1e-3)
    pendulum = torch.stack(at_the_true_constants(damping="zero", drive="zero").roll_forward(start, 0, FRAMES - 1, {}), 1)
    assert (pendulum[..., 0] - theta).abs().max() > 0.5


@pytest.mark.parametrize(
    "options, message",
    [
        ({"damping": "none"}, "transition.damping must be learned or zero"),
        ({"drive": "zero", "drive_frequency": 2.0}, "transition.drive=zero has no drive whose frequency"),
        ({"drive_frequency": -1.0}, "transition.drive_frequency must be a positive number"),
        ({"small_angle": "yes"}, "transition.small_angle must be true or false"),
    ],
)
def test_a_rival_law_that_is_not_one_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        PhysicsTransition(2, SIMULATOR.frame_interval, **options)


def test_the_constants_physics_requires_positive_stay_positive_whatever_the_parameters():
    transition = PhysicsTransition(2, SIMULATOR.frame_interval)
    with torch.no_grad():
        for parameter in (transition.log_gravity_over_length, transition.log_damping, transition.log_drive_frequency):
            parameter.fill_(-80.0)  # far below any value the optimizer could wander to
        transition.amplitude.fill_(-3.0)  # a negative amplitude is a half-turn of the phase: allowed, reported by its size
    learned = transition.constants()
    assert learned["gravity_over_length"] > 0 and learned["damping"] > 0 and learned["drive_frequency"] > 0
    assert learned["drive_amplitude"] == 3.0


def test_the_velocity_noise_is_fixed_unless_learned_and_runs_before_the_choice_still_build():
    states, phase = true_trajectories()
    by_frame = states.transpose(0, 1)
    cases = [
        (PhysicsTransition(2, SIMULATOR.frame_interval), 0.02, False),  # the default
        (PhysicsTransition(2, SIMULATOR.frame_interval, learn_noise=True), 0.02, True),
        (PhysicsTransition(2, SIMULATOR.frame_interval, initial_noise=0.1), 0.1, True),  # the key of earlier runs, whose noise was learned
    ]
    for transition, start, learned in cases:
        before = transition.log_noise.exp().item()
        assert before == pytest.approx(start)
        optimizer = torch.optim.Adam(transition.parameters(), lr=0.05)
        with poutine.condition(data={"drive_phase_vector": phase_vector(phase).float()}):
            step = transition.begin()
        (-step(by_frame[:-1], torch.arange(FRAMES - 1)[:, None]).log_prob(by_frame[1:]).sum()).backward()
        optimizer.step()
        assert (transition.log_noise.exp().item() != before) is learned
        assert "log_noise" in transition.state_dict()  # a checkpoint keeps it either way


@pytest.mark.slow  # 3 to 5.4 s in make test's durations
def test_the_constants_are_recovered_by_maximum_likelihood_from_true_states():
    """Identifiability and gradients through the integrator: from the true states and phases of
    a few trajectories, Adam on log p(z_2:T | z_1) moves every constant from its default start
    to within 2% of the simulator's, and finds down where the simulator has it."""
    states, phase = true_trajectories()
    transition = PhysicsTransition(2, SIMULATOR.frame_interval, velocity_noise=0.05, learn_noise=True)
    optimizer = torch.optim.Adam(transition.parameters(), lr=0.05)
    vector = phase_vector(phase).float()
    by_frame = states.transpose(0, 1)  # (FRAMES, B, 2): every transition of every sequence in one step
    frame_index = torch.arange(FRAMES - 1)[:, None]
    for _ in range(600):
        with poutine.condition(data={"drive_phase_vector": vector}):
            step = transition.begin()
        loss = -step(by_frame[:-1], frame_index).log_prob(by_frame[1:]).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    learned = transition.constants()
    for name in CONSTANTS:
        assert learned[name] == pytest.approx(TRUE[name], rel=0.02), name
    assert abs(transition.down.item()) < 0.02


def test_the_guide_reads_every_angle_from_its_frame_next_to_the_angle_the_law_predicts():
    """With ``follow_transition`` the guide proposes θ_t from the frames as a direction, for every
    frame, unwrapped to lie within π of the θ the transition predicts from z_{t−1}; the velocity
    stays the law's prediction plus a correction. An angle taken as the prediction plus a small
    correction cannot leave a wrong branch (a swing proposed the long way round, over the top)
    once the frames are too far off to pull it back."""
    from guides import SequenceGuide

    model = at_the_true_constants().float()
    guide = SequenceGuide(x_dim=4, z_dim=2, rnn_hidden=8, model=model, follow_transition=True)
    read = 2.5  # the direction every frame's summary points to, whatever the state
    with torch.no_grad():
        guide.direction.weight.zero_(), guide.direction.bias.copy_(torch.tensor([math.cos(read), math.sin(read)]))
        guide.loc.weight.zero_(), guide.loc.bias.copy_(torch.tensor([0.3, 0.4]))  # a correction the angle must ignore
    z_previous = torch.tensor([[7.0, 1.0], [-4.0, -2.0], [0.2, 0.0]])  # angles beyond a turn, either way
    latents = {"drive_phase_vector": torch.tensor([[1.0, 0.0]]).expand(3, 2)}
    with torch.no_grad():
        predicted = model.transition.mean(z_previous, 3, latents)
        loc = guide.step(z_previous, torch.zeros(3, 8), t=4, latents=latents).mean
    assert torch.remainder(loc[:, 0] - read, 2 * math.pi).min(torch.remainder(read - loc[:, 0], 2 * math.pi)) == pytest.approx(torch.zeros(3), abs=1e-5)
    assert (loc[:, 0] - predicted[:, 0]).abs().max() <= math.pi
    assert loc[:, 1] == pytest.approx(predicted[:, 1] + 0.4, abs=1e-5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["transition=physics", "z_dim=3"], "z_dim must be 2"),
        (
            ["transition=neural"],
            r"evaluation.methods.intervention cannot run here: it needs a transition with a drive to switch off \(transition=physics, .*\); .* evaluation.intervene=false",
        ),
        (["transition=physics_undriven"], r"evaluation.methods.intervention cannot run here: .* not with transition.drive=zero"),
        (["evaluation.intervention_context=5"], "evaluation.intervention_context=5 leaves none of .* 5 frames .* keep it under 5"),
        (["evaluation.intervention_context=0"], "evaluation.intervention_context=0 .* a positive integer or null"),
    ],
)
def test_physics_runs_refuse_what_does_not_fit(overrides, message, tmp_path):
    from inference.runs.training_run import train

    with pytest.raises(ValueError, match=message):
        train(compose_config(*TINY, *PHYSICS_RUN, *overrides), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_the_physics_transition_needs_pendulum_data():
    from inference.data import Dataset

    with pytest.raises(ValueError, match="transition=physics integrates the pendulum's law .* use data=pendulum_sequences"):
        PhysicsTransition(2, Dataset.__dataclass_fields__["frame_interval"].default)


def test_a_physics_run_reports_the_learned_constants_and_the_intervention(tmp_path):
    from inference.runs.training_run import train

    overrides = [o for o in TINY if not o.startswith("evaluation.figures")]
    cfg = compose_config(*overrides, *PHYSICS_RUN)
    metrics = train(cfg, tmp_path)
    test = metrics["test"]
    assert set(test["physics"]) == set(CONSTANTS)
    for name in CONSTANTS:
        assert test["physics"][name]["true"] == TRUE[name] and math.isfinite(test["physics"][name]["learned"])
    intervention = test["intervention"]
    assert test["forecast"]["context"] == 2 and intervention["context"] == 3
    assert intervention["horizons"] == [1, 2, 3] and len(intervention["mse_intervened"]) == len(intervention["mse_not_intervened"]) == 3
    assert all(math.isfinite(v) for v in intervention["mse_intervened"] + intervention["mse_not_intervened"])
    # the paired reduction is the gap of the two errors, sign and horizon aligned, with a spread over the sequences
    gaps = [b - a for a, b in zip(intervention["mse_intervened"], intervention["mse_not_intervened"])]
    assert intervention["mse_reduction"] == pytest.approx(gaps, abs=1e-7)
    assert len(intervention["mse_reduction_stderr"]) == 3 and all(s > 0 for s in intervention["mse_reduction_stderr"])
    assert_run_estimates_its_programs(cfg, tmp_path)
    assert_drawn(tmp_path / "plots" / "intervention.png")


def test_the_particle_filter_finds_the_pendulums_state_from_its_frames():
    """Forecasts start from the model's particle filter of the state after the context. On
    frames that show (cos θ, sin θ) with noise 0.1, the filter of the law with the true constants
    and the runs' process noise puts the state of frame 10 within 0.15 rad and 0.5 rad/s of the
    truth on average over its draws, for each sequence (measured, seeds 0 to 2: at most 0.082 rad
    and 0.37 rad/s), though it starts from a prior 2 rad and 2 rad/s wide and a phase drawn at
    random (the drive's phase itself is barely seen in 10 frames, and not checked)."""
    from models import LearnedNormal
    from inference.estimators.filtering import particle_filter

    states, _ = true_trajectories()
    prior = LearnedNormal(2)
    emission = nn.Linear(2, 2)
    with torch.no_grad():
        prior.z_log_scale.fill_(math.log(2.0))
        emission.weight.copy_(torch.eye(2))
        emission.bias.zero_()
    model = StateSpaceModel(prior, PhysicsTransition(2, SIMULATOR.frame_interval, initial=TRUE), emission, Gaussian(0.1, scale_mode="fixed"))
    frames = torch.stack([states[..., 0].cos(), states[..., 0].sin()], -1)
    k = 10
    filtered = particle_filter(model, (frames + 0.1 * torch.randn_like(frames))[:, :k], particles=20000, draws=500)
    angle_error = torch.remainder(filtered.z[..., 0] - states[:, k - 1, 0] + math.pi, 2 * math.pi) - math.pi
    assert (angle_error.abs().mean(0) < 0.15).all()
    assert ((filtered.z[..., 1] - states[:, k - 1, 1]).abs().mean(0) < 0.5).all()
    assert filtered.latents["drive_phase_vector"].shape == (500, B, 2)


def test_a_frames_angle_is_read_from_the_decoders_likelihood_with_its_error():
    """``frame_angles``: frames drawn from a model whose decoder turns the pendulum's image
    (decoder=rotating, the simulator's drawing hanging down as its template) at 200 random
    angles; the angle read from each frame's likelihood on a grid of 128 angles, refined by the
    parabola through its peak, is off by about the standard deviation the parabola's curvature
    gives it: the root mean square of the errors in those units within 0.2 of 1 (four standard
    errors of it; measured 0.92 to 0.97 on seeds 0 to 2), none beyond 4.5. The grid's best
    point alone would be off by up to half its spacing, 0.025 rad, three times the read's 0.007."""
    from inference.data.pendulum import render
    from inference.estimators.filtering import frame_angles
    from models.networks import RotatingDecoder

    torch.manual_seed(0)
    decoder = RotatingDecoder(2, 256, (16, 16))
    with torch.no_grad():
        decoder.template.copy_(render(torch.zeros(1), 16).reshape(1, 1, 16, 16) / decoder.gain)
    model = StateSpaceModel(StandardNormal(2), PhysicsTransition(2, SIMULATOR.frame_interval), decoder, Gaussian(0.05, scale_mode="fixed"))
    theta = (torch.rand(40, 5) * 2 - 1) * math.pi
    with torch.no_grad():
        x = model.frame(torch.stack([theta, torch.zeros_like(theta)], -1)).sample()
    angle, sd = frame_angles(model, x)
    assert angle.shape == sd.shape == (40, 5, 1)
    z = (torch.remainder(angle[..., 0] - theta + math.pi, 2 * math.pi) - math.pi) / sd[..., 0]
    assert abs(z.pow(2).mean().sqrt().item() - 1) < 0.2 and z.abs().max() < 4.5
    assert sd.median() < 0.01


@pytest.mark.parametrize("seed", [0, 1])
def test_the_defensive_proposal_keeps_the_evidence_where_the_guide_reads_every_frame_wrong(seed):
    """``sequential_monte_carlo(..., defensive=True)`` on sharp frames of the pendulum ((cos θ,
    sin θ) with noise 0.01) and a guide that reads every angle as 2.5 rad: with the guide alone
    log p̂ falls more than 100 nats below the bootstrap filter's (20,000 particles, four times),
    while half the particles drawn from the law with each angle conditioned on its frame keep
    it: per sequence, the log of the mean of 16 estimates of 1000 particles lies within four
    standard errors (the delta method's, from the repeats of both) and 0.5 nats of the
    bootstrap's (each estimate is unbiased in p, but the log of a mean of a few heavy-tailed
    ones is not: the 0.5 allows for it). Dropping the mixture's log 2 fails it (checked)."""
    from guides import SequenceGuide
    from inference.estimators.filtering import sequential_monte_carlo
    from models import LearnedNormal

    pyro.set_rng_seed(seed)
    states, _ = true_trajectories(seed)
    prior, emission = LearnedNormal(2), nn.Linear(2, 2)
    with torch.no_grad():
        prior.z_log_scale.fill_(math.log(2.0))
        emission.weight.copy_(torch.eye(2)), emission.bias.zero_()
    model = StateSpaceModel(prior, PhysicsTransition(2, SIMULATOR.frame_interval, initial=TRUE), emission, Gaussian(0.01, scale_mode="fixed"))
    frames = torch.stack([states[..., 0].cos(), states[..., 0].sin()], -1)[:, :12]
    x = frames + 0.01 * torch.randn_like(frames)
    guide = SequenceGuide(x_dim=2, z_dim=2, rnn_hidden=8, model=model, follow_transition=True)
    with torch.no_grad():
        guide.direction.weight.zero_(), guide.direction.bias.copy_(torch.tensor([math.cos(2.5), math.sin(2.5)]))

    def log_mean(estimates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The log of the mean of ``(R, B)`` estimates of p and its delta-method standard error."""
        weights = (estimates - estimates.max(0).values).exp()
        return torch.logsumexp(estimates, 0) - math.log(len(estimates)), weights.std(0) / weights.mean(0) / math.sqrt(len(estimates))

    with torch.no_grad(), pyro.validation_enabled(False):
        reference, reference_se = log_mean(sequential_monte_carlo(model, x.repeat(4, 1, 1), 20000).log_px.double().view(4, B))
        guided = sequential_monte_carlo(model, x, 1000, guide).log_px.double()
        defended, defended_se = log_mean(sequential_monte_carlo(model, x.repeat(16, 1, 1), 1000, guide, defensive=True).log_px.double().view(16, B))
    assert (reference - guided > 100).all()
    assert ((defended - reference).abs() < 4 * (defended_se**2 + reference_se**2).sqrt() + 0.5).all()
