"""What the frames can decide between the rival laws of the pendulum when nothing but the law is
learned: each law of ``experiment=pendulum_laws`` (``transition=physics`` and its rivals) with
the decoder replaced by the simulator's own renderer and pixel noise, and the guide by exact
states or a particle filter.

    python -m bench.law_oracle [--num-train 50] [--sequences 100] [--phases 32] [--particles 128] [--seeds 0 1]

For each law:

1. its constants (those it learns; the ones it fixes stay fixed) and each training sequence's
   drive phase are fitted by maximum likelihood to the training sequences' *true* states, under
   the law's own transition (the model's ``PhysicsTransition``, its process noise included);
2. the states' log-likelihood on the test sequences, the phase summed out on a grid: what the
   law gives observed states;
3. log p̂(x₁:T) of the test sequences' *frames*, from a particle filter whose observation model is
   the simulator's: ``render`` and Gaussian pixel noise, clipped to [0, 1] (a censored Gaussian).
   The first state is drawn from the simulator's initial distribution (θ uniform, θ' uniform on
   [−2, 2]) through a proposal of θ from the frame (its likelihood on a grid of 2048 angles);
   each later angle from the law or from the frame, with even odds, the velocity from the law;
   the phase is summed out by randomized quadrature (``--phases`` of them a sequence, each
   filtered by ``--particles`` particles, systematically resampled among themselves at every
   frame). An unbiased estimate of p(x₁:T) under the law: a lower bound of log p in expectation.

Every law is paired against the first (the full law) on the same test sequences, with common
random numbers; ``--seeds`` repeats the filter to give its Monte Carlo error. The evidence a
trained model reaches (``experiment=pendulum_laws``) can be set beside these: where the oracle
separates two laws and the trained models do not, the loss is in what was learned (decoder,
guide, constants), not in the data.
"""

import argparse
import math
import time

import numpy as np
import torch
from torch.distributions import Normal

from inference.data.pendulum import pendulum_sequences, render
from inference.estimators.filtering import systematic_resample
from models.physics import PhysicsTransition
from models.transitions import nearest_turn

from .common import machine

# the rivals of experiment=pendulum_laws, as options of transition=physics (conf/transition/physics_*.yaml)
LAWS = {
    "physics": {},
    "physics_undamped": {"damping": "zero"},
    "physics_undriven": {"drive": "zero"},
    "physics_small_angle": {"small_angle": True},
    "physics_detuned": {"drive_frequency": 2.0},
}


def true_states(data, split: str) -> torch.Tensor:
    """The (θ, θ') of every frame of a split, θ unwrapped along each sequence: ``(N, T, 2)``."""
    factors = data.factors[split].double()
    theta = np.unwrap(torch.atan2(factors[..., 1], factors[..., 0]).numpy(), axis=1)
    return torch.stack([torch.from_numpy(theta), factors[..., 2]], -1)


def transition_log_prob(law: PhysicsTransition, states: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """log p(z₂:T | z₁, φ) under the law, per sequence and phase: states ``(N, T, 2)``, phase
    ``(N, M)``; returns ``(N, M)``."""
    z, target = states[:, None, :-1], states[:, None, 1:]  # (N, 1, T-1, 2)
    t = torch.arange(states.shape[1] - 1, dtype=states.dtype)
    return law.step(z, t, phase[..., None], law.amplitude).log_prob(target).sum(-1)


def on_phase_grid(law: PhysicsTransition, states: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``grid`` phases evenly spaced on the circle, and :func:`transition_log_prob` of every
    sequence at each: ``(grid,)`` and ``(N, grid)``."""
    phases = torch.arange(grid, dtype=torch.float64) * 2 * math.pi / grid
    return phases, transition_log_prob(law, states, phases.expand(len(states), grid))


def fitted(options: dict, states: torch.Tensor, frame_interval: float, steps: int = 1500, grid: int = 256) -> PhysicsTransition:
    """The law with its learned constants fitted to the states (and a phase per sequence, which
    is re-chosen on a grid every 300 steps, so that no sequence stays in a poor local optimum).
    It starts from the transition's own initial constants: nothing of the truth."""
    law = PhysicsTransition(2, frame_interval, **options).double()
    law.down_scaled.requires_grad_(False)  # the true states hang down at θ = 0
    phase = torch.zeros(len(states), 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([p for p in law.parameters() if p.requires_grad] + [phase], lr=0.01)
    for step in range(steps):
        if step % 300 == 0 and law.driven:
            with torch.no_grad():
                phases, log_prob = on_phase_grid(law, states, grid)
                phase.copy_(phases[log_prob.argmax(1), None])
        loss = -transition_log_prob(law, states, phase).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return law.requires_grad_(False)


def state_log_likelihood(law: PhysicsTransition, states: torch.Tensor, grid: int = 256) -> torch.Tensor:
    """log p(z₂:T | z₁) of each sequence, the phase summed out on a grid (uniform prior)."""
    return torch.logsumexp(on_phase_grid(law, states, grid)[1], 1) - math.log(grid)


def frame_log_likelihood(theta: torch.Tensor, frame: torch.Tensor, size: int, noise: float) -> torch.Tensor:
    """log p(x | θ) of the simulator's observation of one frame ``(size²,)``: the rendered frame
    plus Gaussian noise of standard deviation ``noise``, clipped to [0, 1], so that a pixel at 0
    or 1 has the probability of the noise clipped there. θ any shape; returns its shape."""
    image = render(theta.reshape(-1).float(), size).reshape(-1, size * size)
    zero, one = frame <= 0, frame >= 1
    interior = ~(zero | one)
    residual = (frame[interior] - image[:, interior]) / noise
    log_lik = (-0.5 * residual.square()).sum(-1) - interior.sum() * math.log(noise * math.sqrt(2 * math.pi))
    log_lik = log_lik + torch.special.log_ndtr(-image[:, zero] / noise).sum(-1)  # the mass clipped to 0
    log_lik = log_lik + torch.special.log_ndtr((image[:, one] - 1) / noise).sum(-1)  # and to 1
    return log_lik.double().reshape(theta.shape)


CELLS = 2048  # the grid of the angles' proposal from the frame: cells of 0.003 rad, under a frame's resolution (0.005)
WIDTH = 2 * math.pi / CELLS
CENTRES = (torch.arange(CELLS, dtype=torch.float64) + 0.5) * WIDTH - math.pi  # on [−π, π)


def angle_grid(frames: torch.Tensor, size: int, noise: float) -> torch.Tensor:
    """The proposal of θ from each frame of ``frames`` ``(N, T, size²)``: the log-density of its
    likelihood normalized on the grid of :data:`CELLS`, each cell uniform, ``(N, T, CELLS)``. It
    is the law's no more than the seed's, so one grid serves every law and every seed."""
    return torch.stack([
        torch.stack([torch.log_softmax(frame_log_likelihood(CENTRES, frame, size, noise), -1) for frame in sequence])
        for sequence in frames
    ]) - math.log(WIDTH)


def evidence(
    law: PhysicsTransition, frames: torch.Tensor, grids: torch.Tensor, size: int, noise: float, phases: int, particles: int, seed: int
) -> torch.Tensor:
    """log p̂(x₁:T) of each sequence of ``frames`` ``(N, T, size²)`` under the law, by the particle
    filter of the module's docstring; ``grids`` is :func:`angle_grid` of the frames."""
    torch.manual_seed(seed)
    scale = torch.stack([law.angle_noise, law.log_noise.exp()]).double()
    shape = (phases, particles)

    def uniform(*size):
        return torch.rand(*size, dtype=torch.float64)

    def frame_proposal(log_cell):
        """θ drawn from a frame's grid (:func:`angle_grid`), and the log-density of that
        proposal at any angle."""
        cell = torch.multinomial(log_cell.exp(), phases * particles, replacement=True).reshape(shape)

        def log_density(theta):
            return log_cell[torch.remainder(theta + math.pi, 2 * math.pi).div(WIDTH).long().clamp(max=CELLS - 1)]

        return CENTRES[cell] + (uniform(*shape) - 0.5) * WIDTH, log_density

    out = []
    for sequence, grid in zip(frames, grids):
        # frame 1: θ from the frame (the proposal), θ' stratified on the prior's [−2, 2]
        theta, log_density = frame_proposal(grid[0])
        omega = -2 + 4 * (torch.argsort(uniform(*shape), -1) + uniform(*shape)) / particles
        z = torch.stack([theta, omega], -1)
        log_w = frame_log_likelihood(theta, sequence[0], size, noise) - math.log(2 * math.pi) - log_density(theta)
        phase = 2 * math.pi * (torch.arange(phases, dtype=torch.float64) + uniform(1))[:, None] / phases  # (M, 1)
        log_z = torch.logsumexp(log_w, -1) - math.log(particles)
        for t in range(1, len(sequence)):
            index = systematic_resample(log_w.T, particles).T  # within each phase's group
            mean = law.mean_step(z.gather(1, index[..., None].expand(*shape, 2)), t - 1, phase, law.amplitude)
            # θ from the law or, with even odds, from the frame: where the law's path strays from
            # sharp frames by more than its noise, few of its own draws land where the frame is
            from_frame, frame_log_density = frame_proposal(grid[t])
            from_law = mean[..., 0] + scale[0] * torch.randn(shape, dtype=torch.float64)
            theta = torch.where(uniform(*shape) < 0.5, nearest_turn(from_frame, mean[..., 0]), from_law)
            law_log_density = Normal(mean[..., 0], scale[0]).log_prob(theta)
            log_q = torch.logaddexp(law_log_density, frame_log_density(theta)) - math.log(2)
            omega = mean[..., 1] + scale[1] * torch.randn(shape, dtype=torch.float64)
            z = torch.stack([theta, omega], -1)
            log_w = law_log_density + frame_log_likelihood(theta, sequence[t], size, noise) - log_q
            log_z = log_z + torch.logsumexp(log_w, -1) - math.log(particles)
        out.append(torch.logsumexp(log_z, -1) - math.log(phases))  # the phase summed out
    return torch.stack(out)


def paired(difference: torch.Tensor) -> str:
    n = len(difference)
    return (f"{difference.mean():9.1f} ± {difference.std() / math.sqrt(n):6.1f}  (median {difference.median():8.1f}, "
            f"the full law better on {(difference < 0).double().mean():.0%})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-train", type=int, default=50, help="training sequences (data.num_train)")
    parser.add_argument("--sequences", type=int, default=100, help="test sequences to score (of data.num_test=100)")
    parser.add_argument("--phases", type=int, default=32, help="drive phases a sequence, summed out by quadrature")
    parser.add_argument("--particles", type=int, default=128, help="particles a phase; 0: the states' log-likelihood alone")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="the particle filter's seeds: one estimate each")
    parser.add_argument("--laws", nargs="+", default=list(LAWS), choices=list(LAWS), help="the first is the one the others are paired against")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine())
    noise = 0.05  # data.noise of conf/data/pendulum_sequences.yaml, whose other keys are the function's defaults
    data = pendulum_sequences(num_train=args.num_train, noise=noise)
    size = data.image_shape[-1]
    train, test = true_states(data, "train"), true_states(data, "test")[: args.sequences]
    frames = data.split("test")[: args.sequences].reshape(len(test), test.shape[1], -1)
    grids = angle_grid(frames, size, noise) if args.particles else None
    states, frame_ll = {}, {}
    for name in args.laws:
        start = time.perf_counter()
        law = fitted(LAWS[name], train, data.frame_interval)
        constants = ", ".join(f"{k} {v:.3f}" for k, v in law.constants().items() if law.driven or not k.startswith("drive"))
        states[name] = state_log_likelihood(law, test)
        line = f"{name:20s} {constants}; states {states[name].mean():8.1f}"
        if args.particles:
            frame_ll[name] = torch.stack([evidence(law, frames, grids, size, noise, args.phases, args.particles, seed) for seed in args.seeds])
            line += f", frames {frame_ll[name].mean():9.1f}"
        print(f"{line} ({time.perf_counter() - start:.0f} s)", flush=True)
    first = args.laws[0]
    print(f"\npaired against {first}, nats a sequence (mean ± standard error over {len(test)} test sequences):")
    for name in args.laws[1:]:
        print(f"{name:20s} states {paired(states[name] - states[first])}")
        if args.particles:
            difference = frame_ll[name] - frame_ll[first]
            mc = f"; MC sd of one paired estimate {difference.std(0).pow(2).mean().sqrt():.1f}" if len(args.seeds) > 1 else ""
            print(f"{'':20s} frames {paired(difference.mean(0))}{mc}")
    if args.particles and len(args.seeds) > 1:
        print(f"MC sd of one sequence's estimate, {first}: {frame_ll[first].std(0).pow(2).mean().sqrt():.2f} nats")


if __name__ == "__main__":
    main()
