"""Latent physics: a transition that is the pendulum's law with learned constants
(``transition=physics``).

The state is z = (θ, ω), the angle and the angular velocity, advanced over one frame interval by
the same fourth-order Runge–Kutta steps the simulator takes (:func:`pendulum_rk4`) for

    θ'' = −(g/ℓ) sin θ − γ θ' + A cos(Ω t + φ)

with g/ℓ, γ, A and Ω learned, plus a small fixed process noise (``velocity_noise``,
``angle_noise``). g/ℓ, γ and Ω are positive by construction (the exponential of a
free parameter); A is free in sign, as a sign is a half-turn of the phase. The phase φ is a
latent of each sequence: v ~ N(0, I₂) at the site ``drive_phase_vector``, φ = atan2(v₂, v₁),
whose direction is uniform on the circle and which a Gaussian guide can propose with
reparameterized draws (a uniform angle has no such guide).

The decoder reads the state through (cos θ, sin θ) (``emission``), so that θ has the
simulator's scale (a turn is 2π) and the constants are those of the simulator. Where "down" is
in the decoder's angle is not known before training: gravity pulls towards the learned angle
``down`` (θ − down is the simulator's angle). Without it, gravity pulls towards whatever angle
the decoder happened to draw hanging down at initialization, and training escapes the
mismatch by shrinking g/ℓ rather than by turning decoder and guide together; with it, the
mismatch is one angle with a direct gradient. The dynamics are symmetric under reflection
(θ → −θ with the phase turned by π), so a mirrored decoder needs nothing. The drive's
amplitude is the site ``drive_amplitude`` of every sequence (``pyro.deterministic``), so that a
handler can intervene on it: ``poutine.do(model, data={"drive_amplitude": torch.tensor(0.)})``
switches the force off.

Rival laws, as hypotheses that share everything but the rule (``transition.damping=zero``,
``transition.drive=zero``, ``transition.small_angle=true``, ``transition.drive_frequency=Ω``):
a constant set to zero or held fixed is a buffer, not a parameter, so no step moves it; a law
without a drive has no drive phase to infer, so its sequences keep no latent of their own.
"""

import math

import torch
from torch import nn

import pyro
import pyro.distributions as dist

from .transitions import Transition

__all__ = ["CONSTANTS", "DRIVE_SITE", "SUBSTEPS", "PhysicsTransition", "pendulum_rk4"]

#: the learned constants, named as the simulator names them (``data=pendulum_sequences``)
CONSTANTS = ("gravity_over_length", "damping", "drive_amplitude", "drive_frequency")
DOWN_GAIN = 20.0


def pendulum_rk4(
    theta, omega, t, *, dt: float, steps: int, gravity_over_length, damping, drive_amplitude, drive_frequency, phase, small_angle: bool = False
):
    """Advance (θ, ω) at time ``t`` by ``steps`` classic RK4 steps of ``dt`` seconds; every
    argument broadcasts against the others. Returns (θ, ω) at ``t + steps·dt``. With
    ``small_angle`` gravity pulls by θ instead of sin θ: the small-angle law, linear in θ."""
    restoring = (lambda th: th) if small_angle else torch.sin

    def acceleration(time, th, om):
        return -gravity_over_length * restoring(th) - damping * om + drive_amplitude * torch.cos(drive_frequency * time + phase)

    for _ in range(steps):
        k1t, k1o = omega, acceleration(t, theta, omega)
        k2t, k2o = omega + 0.5 * dt * k1o, acceleration(t + 0.5 * dt, theta + 0.5 * dt * k1t, omega + 0.5 * dt * k1o)
        k3t, k3o = omega + 0.5 * dt * k2o, acceleration(t + 0.5 * dt, theta + 0.5 * dt * k2t, omega + 0.5 * dt * k2o)
        k4t, k4o = omega + dt * k3o, acceleration(t + dt, theta + dt * k3t, omega + dt * k3o)
        theta = theta + dt / 6 * (k1t + 2 * k2t + 2 * k3t + k4t)
        omega = omega + dt / 6 * (k1o + 2 * k2o + 2 * k3o + k4o)
        t = t + dt
    return theta, omega


SUBSTEPS = 5  # Runge–Kutta steps a frame by default: the default data's simulator's (data.stride)
# the site of the drive's amplitude, which an intervention sets to 0 (poutine.do) to switch the drive off
DRIVE_SITE = "drive_amplitude"


class PhysicsTransition(Transition):
    """z_{t+1} ~ N(RK4(z_t; g/ℓ, γ, A, Ω, φ), diag q²) over one frame interval.

    :param int z_dim: must be 2, the state (θ, ω).
    :param float frame_interval: the data's ``Dataset.frame_interval``, the seconds between
        frames; nothing else of the data (its true constants stay out of the model).
    :param dict initial: the constants before training, by the names of :data:`CONSTANTS`.
    :param float velocity_noise: the scale of the noise on the angular velocity over one frame
        interval: fixed, or where it starts with ``learn_noise``.
    :param bool learn_noise: learn the velocity's noise. Off by default: a learned noise absorbs
        whatever the law does not yet explain, the drive above all, whose push over one frame
        (A·dt) is small: a noise larger than that push explains the drive away and sends A to
        zero, while a small fixed noise makes the law explain the motion.
    :param float angle_noise: the scale of the noise on the angle, fixed. In the law the angle
        moves by the velocity alone; a small fixed noise keeps it so. Learned, it grows early in
        training while the guide's velocities are still wrong, and once it is large a wrong
        velocity costs next to nothing (0.1 rad/s off moves the next angle by 0.01 rad), so the
        velocities never get put right and g/ℓ shrinks to explain the motion with noise.
    :param float initial_noise: the key of runs written before ``learn_noise`` (whose noise was
        learned from this start): ``learn_noise=True`` from ``velocity_noise=initial_noise``,
        so that their configs still build.
    :param int substeps: Runge–Kutta steps per frame interval; by default :data:`SUBSTEPS`, the
        default data's simulator's (so that the true constants give its states to rounding). Fewer
        are faster (the model and a guide that follows the transition take them every frame),
        at the integrator's error: with 1, 3e-4 rad and 1e-3 rad/s over 25 frames of the default data.
    :param str damping: ``"learned"``, or ``"zero"``: the undamped law (γ = 0).
    :param str drive: ``"learned"``, or ``"zero"``: the undriven law (A = 0, and no drive phase).
    :param bool small_angle: the small-angle law, gravity pulling by θ instead of sin θ.
    :param float drive_frequency: ``None``: Ω learned; a number: the drive's frequency fixed there
        (rad/s), a law that names its drive's period.
    """

    sequence_latents = {"drive_phase_vector": 2}
    angles = (0,)  # θ: the decoder reads it through cos θ and sin θ
    learns_constants = True

    def __init__(
        self,
        z_dim: int,
        frame_interval: float | None,
        initial: dict | None = None,
        velocity_noise: float = 0.02,
        learn_noise: bool = False,
        angle_noise: float = 0.02,
        substeps: int | None = None,
        initial_noise: float | None = None,
        damping: str = "learned",
        drive: str = "learned",
        small_angle: bool = False,
        drive_frequency: float | None = None,
    ):
        super().__init__()
        for key, value in (("damping", damping), ("drive", drive)):
            if value not in ("learned", "zero"):
                raise ValueError(f"transition.{key} must be learned or zero (the rival law without it), got {value!r}")
        if not isinstance(small_angle, bool):
            raise ValueError(f"transition.small_angle must be true or false, got {small_angle!r}")
        if drive_frequency is not None:
            if isinstance(drive_frequency, bool) or not isinstance(drive_frequency, (int, float)) or not drive_frequency > 0:
                raise ValueError(f"transition.drive_frequency must be a positive number of rad/s (the drive's fixed frequency) or null (learned), got {drive_frequency!r}")
            if drive == "zero":
                raise ValueError("transition.drive=zero has no drive whose frequency transition.drive_frequency could fix; set one of them")
        if initial_noise is not None:
            velocity_noise, learn_noise = initial_noise, True
        if not frame_interval:
            raise ValueError(
                "transition=physics integrates the pendulum's law over the data's frame interval, and this data has no "
                "frame interval; use data=pendulum_sequences, or transition=neural|linear for other sequences"
            )
        if z_dim != 2:
            raise ValueError(f"transition=physics has the state (angle, angular velocity), so z_dim must be 2, got z_dim={z_dim}; set z_dim=2")
        initial = {"gravity_over_length": 4.0, "damping": 0.3, "drive_amplitude": 0.5, "drive_frequency": 1.0, **(initial or {})}
        unknown = set(initial) - set(CONSTANTS)
        if unknown:
            raise ValueError(f"transition.initial has {sorted(unknown)}, which are not constants of the pendulum; the constants are {list(CONSTANTS)}")
        for name in ("gravity_over_length", "damping", "drive_frequency"):
            if not initial[name] > 0:
                raise ValueError(f"transition.initial.{name} must be positive (it is learned on the log scale), got {initial[name]!r}")
        for key, value in (("velocity_noise", velocity_noise), ("angle_noise", angle_noise)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"transition.{key} must be a positive number, got {value!r}")
        if not isinstance(learn_noise, bool):
            raise ValueError(f"transition.learn_noise must be true or false, got {learn_noise!r}")
        if substeps is not None and (isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1):
            raise ValueError(f"transition.substeps must be a positive integer or null ({SUBSTEPS}), got {substeps!r}")
        self.z_dim, self.stride = 2, substeps or SUBSTEPS
        self.dt = float(frame_interval) / self.stride  # one frame interval in self.stride steps
        self.small_angle = small_angle
        # what a rival law sets to zero or fixes is a buffer: in the checkpoint, and never stepped
        self.fixed = {"damping"} if damping == "zero" else set()  #: the constants this law does not learn
        if drive == "zero":
            self.fixed |= {"drive_amplitude", "drive_frequency"}
            self.sequence_latents = {}  # no drive, no phase to infer
        if drive_frequency is not None:
            self.fixed.add("drive_frequency")
        self._held("log_gravity_over_length", math.log(initial["gravity_over_length"]))
        self._held("log_damping", -math.inf if damping == "zero" else math.log(initial["damping"]), learned="damping" not in self.fixed)
        frequency = drive_frequency or initial["drive_frequency"]
        self._held("log_drive_frequency", math.log(frequency), learned="drive_frequency" not in self.fixed)
        self._held("amplitude", 0.0 if drive == "zero" else float(initial["drive_amplitude"]), learned="drive_amplitude" not in self.fixed)
        self._held("log_noise", math.log(velocity_noise), learned=learn_noise)  # the velocity's
        self.register_buffer("angle_noise", torch.tensor(float(angle_noise)))
        # The decoder's angle of hanging straight down, as DOWN_GAIN times a parameter: the offset
        # it must follow drifts by radians while decoder and guide learn, faster than Adam's
        # steps of 1e-3 move a parameter (0.02 rad an epoch), and a lagging down turns gravity.
        self.down_scaled = nn.Parameter(torch.zeros(()))

    def _held(self, attribute: str, value: float, learned: bool = True) -> None:
        """A number of the law: a parameter where it is learned, else a buffer (in the
        checkpoint, never stepped)."""
        value = torch.tensor(value)
        if learned:
            setattr(self, attribute, nn.Parameter(value))
        else:
            self.register_buffer(attribute, value)

    @property
    def driven(self) -> bool:
        return bool(self.sequence_latents)

    @property
    def intervenable(self) -> tuple[str, ...]:
        return (DRIVE_SITE,) if self.driven else ()

    @property
    def down(self) -> torch.Tensor:
        return DOWN_GAIN * self.down_scaled

    def constants(self) -> dict[str, float]:
        """The learned constants by the simulator's names. The drive's amplitude is given as its
        size, |A|, as the simulator's A ≥ 0 is: a negative A is the same law with every phase
        turned by π, which the sequences' latent phases take up (training ends on either sign)."""
        return {
            "gravity_over_length": self.log_gravity_over_length.exp().item(),
            "damping": self.log_damping.exp().item(),
            "drive_amplitude": self.amplitude.abs().item(),
            "drive_frequency": self.log_drive_frequency.exp().item(),
        }

    @property
    def emission_dim(self) -> int:
        return 2

    def emission(self, z: torch.Tensor) -> torch.Tensor:
        return torch.stack([z[..., 0].cos(), z[..., 0].sin()], -1)

    def begin(self):
        """Draw each sequence's drive phase and record its drive amplitude (the sites
        ``drive_phase_vector`` and ``drive_amplitude``, inside the caller's data plate); returns
        the step. An undriven law draws nothing."""
        if not self.driven:
            return lambda z, t: self.step(z, t, self.amplitude, self.amplitude)  # A = 0: the phase is never read
        vector = pyro.sample("drive_phase_vector", dist.Normal(torch.zeros(2, device=self.amplitude.device), 1.0).to_event(1))
        amplitude = pyro.deterministic(DRIVE_SITE, self.amplitude.expand(vector.shape[:-1]))
        return lambda z, t: self.step(z, t, self.phase(vector), amplitude)

    @staticmethod
    def phase(vector: torch.Tensor) -> torch.Tensor:
        """φ, the angle of the site ``drive_phase_vector``."""
        return torch.atan2(vector[..., 1], vector[..., 0])

    def mean(self, z: torch.Tensor, t, latents: dict) -> torch.Tensor:
        phase = self.phase(latents["drive_phase_vector"]) if self.driven else self.amplitude  # undriven: A = 0, any phase
        return self.mean_step(z, t, phase, self.amplitude)

    def mean_step(self, z: torch.Tensor, t: int, phase: torch.Tensor, amplitude: torch.Tensor) -> torch.Tensor:
        """The noise-free state of frame t + 1 from z, that of frame t (0-based)."""
        theta, omega = pendulum_rk4(
            z[..., 0] - self.down,
            z[..., 1],
            t * self.stride * self.dt,
            dt=self.dt,
            steps=self.stride,
            gravity_over_length=self.log_gravity_over_length.exp(),
            damping=self.log_damping.exp(),
            drive_amplitude=amplitude,
            drive_frequency=self.log_drive_frequency.exp(),
            phase=phase,
            small_angle=self.small_angle,
        )
        return torch.stack([theta + self.down, omega], -1)

    def step(self, z: torch.Tensor, t: int, phase: torch.Tensor, amplitude: torch.Tensor) -> dist.TorchDistribution:
        scale = torch.stack([self.angle_noise, self.log_noise.exp()])
        return dist.Normal(self.mean_step(z, t, phase, amplitude), scale).to_event(1)

    def forward(self, z: torch.Tensor) -> dist.TorchDistribution:
        raise TypeError("the physics transition depends on the time and the sequence's drive phase: call begin() and then its step(z, t)")
