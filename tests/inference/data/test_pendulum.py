"""The pendulum's physics and rendering, and the linear probe that reads the factors back."""

import math

import torch

from inference.data.pendulum import pendulum, render, simulate
from inference.estimators.probe import linear_probe_r2


def test_free_pendulum_conserves_energy_and_has_the_small_angle_period():
    # no damping, no drive: E = θ'²/2 − (g/ℓ) cos θ is constant
    states = simulate(8, 200, stride=5, dt=0.01, damping=0.0, drive_amplitude=0.0, generator=torch.Generator().manual_seed(0))
    theta, omega = states[..., 0].double(), states[..., 1].double()
    energy = 0.5 * omega**2 - 9.81 * torch.cos(theta)
    assert (energy - energy[:, :1]).abs().max() < 1e-3
    # small oscillations: period 2π/sqrt(g/ℓ)
    small = simulate(1, 4000, stride=1, dt=0.001, damping=0.0, drive_amplitude=0.0, initial=(0.01, 0.0))[0, :, 0]
    upward = ((small[:-1] < 0) & (small[1:] >= 0)).nonzero().flatten().double() * 0.001
    period = (upward[-1] - upward[0]) / (len(upward) - 1)
    assert math.isclose(period, 2 * math.pi / math.sqrt(9.81), rel_tol=2e-3)


def test_rendering_puts_the_bob_where_the_angle_says():
    image = render(torch.tensor([0.0, math.pi / 2]), size=28)
    bottom, right = image[0], image[1]
    y, x = divmod(bottom.argmax().item(), 28)
    assert x in (13, 14) and y > 20  # hanging down below the centre
    y, x = divmod(right.argmax().item(), 28)
    assert y in (13, 14) and x > 20  # pointing right


def test_dataset_keeps_the_true_state_of_every_frame():
    data = pendulum(num_train=120, num_valid=30, num_test=60, frames_per_trajectory=30)
    assert data.factors["train"].shape == (120, 3) and data.factors["test"].shape == (60, 3)
    cos, sin = data.factors["test"][:, 0], data.factors["test"][:, 1]
    assert torch.allclose(cos**2 + sin**2, torch.ones(60), atol=1e-5)
    assert data.train.min() >= 0 and data.train.max() <= 1 and data.image_shape == (28, 28)


def test_linear_probe_r2_is_one_for_a_linear_readout_and_near_zero_for_noise():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(500, 4, generator=g)
    targets = features @ torch.randn(4, 2, generator=g) + 3.0
    r2 = linear_probe_r2(features[:400], targets[:400], features[400:], targets[400:])
    assert torch.allclose(r2, torch.ones(2), atol=1e-6)
    noise = torch.randn(500, 2, generator=g)
    r2 = linear_probe_r2(features[:400], noise[:400], features[400:], noise[400:])
    assert (r2.abs() < 0.1).all()
