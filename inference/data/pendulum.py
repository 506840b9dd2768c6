"""A dataset with known physics: rendered frames of a driven, damped pendulum.

θ'' = −(g/ℓ) sin θ − γ θ' + A cos(Ω t + φ), integrated with fourth-order Runge–Kutta
(:func:`models.physics.pendulum_rk4`, the steps the physics transition takes). Each trajectory
starts from a random angle, angular velocity and drive phase; every ``stride``-th state is
rendered as a ``size × size`` image (a rod from the centre and a bob, θ = 0 hanging down) with
Gaussian pixel noise, clipped to [0, 1]. The state of every frame is kept as its
ground-truth factors (cos θ, sin θ, θ'), so a run can ask whether the latent space learned the
physics. Trajectories, not frames, are split between train, valid and test.

:func:`pendulum` gives the frames one by one; :func:`pendulum_sequences` gives whole
trajectories, ``(N, T, pixels)``, for models with a latent state per frame, with the frame
interval (``Dataset.frame_interval``) and the simulator that made them (``Dataset.simulator``,
a :class:`PendulumSimulator`: the constants, and the truth without the drive), which the
pendulum's own evaluations read; nothing generic imports this module.
"""

import math
from dataclasses import dataclass

import torch

from models.physics import pendulum_rk4

from .dataset import Dataset, transformed

__all__ = ["PendulumSimulator", "pendulum", "pendulum_sequences", "simulate", "render"]

FACTOR_NAMES = ("cos_angle", "sin_angle", "angular_velocity")


def simulate(
    num_trajectories: int,
    frames: int,
    *,
    stride: int = 5,
    dt: float = 0.02,
    gravity_over_length: float = 9.81,
    damping: float = 0.1,
    drive_amplitude: float = 1.0,
    drive_frequency: float = 2.0 / 3.0,
    initial: tuple[float, float] | torch.Tensor | None = None,
    phase: torch.Tensor | None = None,
    start_time: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """:param initial: the starting (θ, θ') of every trajectory, or of each as a
        ``(num_trajectories, 2)`` tensor; random (θ uniform on the circle, θ' uniform on [−2, 2])
        when ``None``.
    :param phase: the drive phase φ of each trajectory; uniform on [0, 2π) when ``None``.
    :param start_time: t at the first frame (the drive is A cos(Ω t + φ)), so that a trajectory
        can be continued from one of its frames.
    :returns: the states (θ, θ') of every rendered frame, a ``(num_trajectories, frames, 2)`` tensor."""
    theta = (torch.rand(num_trajectories, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi
    omega = (torch.rand(num_trajectories, generator=generator, dtype=torch.float64) * 2 - 1) * 2.0
    if isinstance(initial, torch.Tensor):
        theta, omega = initial.to(torch.float64).unbind(-1)
    elif initial is not None:
        theta, omega = torch.full_like(theta, initial[0]), torch.full_like(omega, initial[1])
    drawn = torch.rand(num_trajectories, generator=generator, dtype=torch.float64) * 2 * math.pi
    phase = drawn if phase is None else phase.to(torch.float64)

    constants = dict(
        gravity_over_length=gravity_over_length, damping=damping, drive_amplitude=drive_amplitude, drive_frequency=drive_frequency, phase=phase
    )
    states = []
    for frame in range(frames):
        states.append(torch.stack([theta, omega], -1))
        theta, omega = pendulum_rk4(theta, omega, start_time + frame * stride * dt, dt=dt, steps=stride, **constants)
    return torch.stack(states, 1).float()


def render(theta: torch.Tensor, size: int = 28) -> torch.Tensor:
    """Draw a pendulum at each angle: a ``(N, size, size)`` tensor in [0, 1]."""
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    y, x = torch.meshgrid(coords, coords, indexing="ij")  # (size, size), y pointing down
    centre, length = size / 2, 0.38 * size
    bob_x = centre + length * torch.sin(theta)[:, None, None]
    bob_y = centre + length * torch.cos(theta)[:, None, None]
    bob = torch.exp(-((x - bob_x) ** 2 + (y - bob_y) ** 2) / (2 * (size / 16) ** 2))
    # distance from each pixel to the rod, the segment from the centre to the bob
    dx, dy = bob_x - centre, bob_y - centre
    along = (((x - centre) * dx + (y - centre) * dy) / (dx**2 + dy**2)).clamp(0, 1)
    rod_distance2 = (x - centre - along * dx) ** 2 + (y - centre - along * dy) ** 2
    rod = 0.6 * torch.exp(-rod_distance2 / (2 * (size / 56) ** 2))
    return torch.maximum(bob, rod)


def observed(state: torch.Tensor, size: int, noise: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The frames of states (θ, θ'), ``(..., 2)``: ``(..., size²)`` images with Gaussian pixel
    noise of standard deviation ``noise``, clipped to [0, 1]; and their factors (cos θ, sin θ, θ'),
    ``(..., 3)``."""
    image = render(state[..., 0].reshape(-1), size).reshape(*state.shape[:-1], size * size)
    noisy = (image + noise * torch.randn(image.shape, generator=generator)).clamp(0, 1)
    return noisy, torch.stack([state[..., 0].cos(), state[..., 0].sin(), state[..., 1]], -1)


def pendulum(
    num_train: int = 4000,
    num_valid: int = 500,
    num_test: int = 1000,
    size: int = 28,
    noise: float = 0.05,
    frames_per_trajectory: int = 50,
    damping: float = 0.1,
    drive_amplitude: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """Frames of a driven, damped pendulum with their true state as ``factors``.

    :param int size: the image's height and width in pixels.
    :param float noise: the standard deviation of the Gaussian pixel noise.
    """
    if min(num_train, num_test, size, frames_per_trajectory) <= 0 or num_valid < 0 or noise < 0:
        raise ValueError("pendulum: counts and size must be positive, noise non-negative")
    g = torch.Generator().manual_seed(seed)
    counts = [num_train, num_valid, num_test]
    trajectories = [math.ceil(n / frames_per_trajectory) for n in counts]
    states = simulate(sum(trajectories), frames_per_trajectory, damping=damping, drive_amplitude=drive_amplitude, generator=g)
    splits, factors, start = [], {}, 0
    for name, n, m in zip(("train", "valid", "test"), counts, trajectories):
        state = states[start : start + m].reshape(-1, 2)[:n]  # whole trajectories per split
        start += m
        image, factors[name] = observed(state, size, noise, g)
        splits.append(image)
    return transformed("pendulum", splits, (size, size), levels=None, factors=factors, factor_names=FACTOR_NAMES)


@dataclass(frozen=True)
class PendulumSimulator:
    """The simulator behind ``data=pendulum_sequences``: its constants and its integrator
    (``stride`` steps of ``dt`` seconds a frame), kept on the dataset as ``Dataset.simulator``."""

    gravity_over_length: float
    damping: float
    drive_amplitude: float
    drive_frequency: float
    dt: float
    stride: int

    @property
    def constants(self) -> dict[str, float]:
        """The constants of the law by name (those :class:`models.physics.PhysicsTransition` learns)."""
        return dict(gravity_over_length=self.gravity_over_length, damping=self.damping, drive_amplitude=self.drive_amplitude, drive_frequency=self.drive_frequency)

    @property
    def frame_interval(self) -> float:
        return self.stride * self.dt

    def undriven_frames(self, factors: torch.Tensor, context: int, horizon: int, image_size: int) -> torch.Tensor:
        """The frames context+1 … context+horizon of the sequences whose true (cos θ, sin θ, θ')
        of every frame are ``factors`` (``(B, T, 3)``), had the drive been switched off after
        frame ``context``: the simulator with A = 0 from the true state of that frame, rendered
        without pixel noise; ``(B, horizon, size²)``."""
        initial = factors[:, context - 1].double()
        initial = torch.stack([torch.atan2(initial[:, 1], initial[:, 0]), initial[:, 2]], -1)
        constants = {name: value for name, value in self.constants.items() if name != "drive_amplitude"}
        states = simulate(
            factors.shape[0], horizon + 1, stride=self.stride, dt=self.dt, drive_amplitude=0.0, initial=initial.cpu(),
            start_time=(context - 1) * self.frame_interval, generator=torch.Generator().manual_seed(0), **constants,
        )[:, 1:]  # the generator only draws the unused random start and phase, away from the global RNG
        return render(states[..., 0].reshape(-1), image_size).reshape(factors.shape[0], horizon, -1)


def pendulum_sequences(
    num_train: int = 400,
    num_valid: int = 50,
    num_test: int = 100,
    frames: int = 30,
    size: int = 16,
    noise: float = 0.05,
    stride: int = 5,
    dt: float = 0.02,
    gravity_over_length: float = 9.81,
    damping: float = 0.5,
    drive_amplitude: float = 1.0,
    drive_frequency: float = 2.0 / 3.0,
    seed: int = 0,
) -> Dataset:
    """Whole trajectories of the driven, damped pendulum: each split an ``(N, frames, size²)``
    tensor of rendered frames ``stride·dt`` seconds apart, each sequence from its own random
    state and drive phase. ``factors`` holds the true (cos θ, sin θ, θ') of every frame, an
    ``(N, frames, 3)`` tensor per split; ``frame_interval`` the seconds between frames, and
    ``simulator`` the :class:`PendulumSimulator` with the constants.

    :param int frames: T, the frames of a sequence (at least 2: a sequence model needs a transition).
    :param int size: the frame's height and width in pixels.
    :param float noise: the standard deviation of the Gaussian pixel noise.
    """
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise ValueError(f"data.frames={frames!r}: a sequence needs at least 2 frames, for a transition between them")
    if min(num_train, num_test, size, stride) <= 0 or num_valid < 0 or noise < 0 or dt <= 0:
        raise ValueError("pendulum_sequences: counts, size, stride and dt must be positive, noise non-negative")
    constants = dict(gravity_over_length=gravity_over_length, damping=damping, drive_amplitude=drive_amplitude, drive_frequency=drive_frequency)
    g = torch.Generator().manual_seed(seed)
    counts = [num_train, num_valid, num_test]
    states = simulate(sum(counts), frames, stride=stride, dt=dt, generator=g, **constants)
    splits, factors = [], {}
    for name, state in zip(("train", "valid", "test"), states.split(counts)):  # whole sequences per split
        image, factors[name] = observed(state, size, noise, g)
        splits.append(image)
    simulator = PendulumSimulator(**constants, dt=dt, stride=stride)
    return transformed(
        "pendulum_sequences", splits, (size, size), levels=None, factors=factors, factor_names=FACTOR_NAMES,
        frame_interval=simulator.frame_interval, simulator=simulator,
    )
