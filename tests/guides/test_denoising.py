"""The denoising criterion: corruptions at their levels, a guide that sees them only in
training, and the digits preset, whose denoised estimates beat the corrupted inputs."""

import math

import pytest
import torch

from conftest import SMALL_NETS, TINY, compose_config
from guides import AmortizedNormal, LocalNormal
from guides.denoising import CORRUPTIONS, Denoising, GaussianNoise, Mask, SaltAndPepper
from inference.runs import summary, train
from models import MLP

N = 200_000  # pixels: the fractions below have standard errors of about 1e-3


@pytest.mark.parametrize("corruption", CORRUPTIONS.values())
def test_level_zero_is_the_identity(corruption):
    x = torch.rand(50, 64)
    assert corruption(0)(x) is x


@pytest.mark.parametrize("level", [0.1, 0.5])
def test_each_corruption_has_the_strength_its_level_says(level):
    bound = 4 * math.sqrt(level * (1 - level) / N)  # four standard errors of a fraction
    gray = torch.full((N,), 0.5)
    assert abs((SaltAndPepper(level)(gray) != gray).float().mean().item() - level) < bound  # every hit pixel turns 0 or 1
    ones = torch.ones(N)
    assert abs((Mask(level)(ones) == 0).float().mean().item() - level) < bound
    noise = GaussianNoise(level)(gray) - gray
    assert abs(noise.std().item() - level) < 4 * level / math.sqrt(2 * N) and abs(noise.mean().item()) < 4 * level / math.sqrt(N)


def test_levels_outside_the_range_are_refused():
    with pytest.raises(ValueError, match=r"corruption.level=1.5: salt_pepper needs the probability that a pixel is replaced, at least 0 and at most 1"):
        SaltAndPepper(1.5)
    with pytest.raises(ValueError, match=r"corruption.level=-0.1: gaussian needs the noise's standard deviation, at least 0$"):
        GaussianNoise(-0.1)


def test_the_guide_sees_the_corruption_in_training_only():
    seen = []

    class Recording(AmortizedNormal):
        def forward(self, x):
            seen.append(x)
            return super().forward(x)

    guide = Denoising(Recording(MLP, x_dim=16, z_dim=2), Mask(0.5))
    x = torch.ones(8, 16)
    guide.train()(x)
    guide.eval()(x)
    assert (seen[0] == 0).any() and seen[1] is x
    with pytest.raises(ValueError, match="keeps parameters for each training point and knows no corrupted one"):
        Denoising(LocalNormal(x, x_dim=16, z_dim=2), Mask(0.5))


@pytest.mark.slow  # a run with the gaps: about 6 s
def test_a_denoising_run_decomposes_its_gaps_on_clean_data(tmp_path):
    """In eval mode the wrapped guide is the guide it wraps, so the gaps are that guide's."""
    metrics = train(compose_config(*TINY, *SMALL_NETS, "corruption=mask", "data.binarize=fixed", "evaluation.gaps=true", "evaluation.gap_points=4",
                                     "+evaluation.methods.gaps.fit_steps=300"), tmp_path)
    gaps = metrics["test"]["gaps"]
    assert "skipped" not in gaps and math.isfinite(gaps["approximation"]["mean"]) and math.isfinite(gaps["amortization"]["mean"])
    assert len(metrics["test"]["denoise"]["error_input"]) == 5  # binary data: error rates too


@pytest.mark.slow  # trains the denoising preset
def test_the_digits_preset_denoises_better_than_the_corrupted_input(tmp_path):
    """experiment=denoise_digits as it is (300 epochs), evaluated on 100 test points: the
    denoised estimate has a higher PSNR than the corrupted input at every level from 0.1 to 0.5
    (measured with the exact density bounded at 48: 17.5 against 16.0 dB at 0.1, 13.4 against 6.8
    at 0.5, on all 360 points)."""
    options = ["experiment=denoise_digits", "train.progress=false", "train.device=cpu", "evaluation.max_points=100", "evaluation.figures=false",
               "evaluation.prior_proposal=false", "evaluation.num_particles=100"]
    metrics = train(compose_config(*options), tmp_path)
    denoise = metrics["test"]["denoise"]
    assert denoise["corruption"] == "salt_pepper" and denoise["levels"] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert all(b > a for a, b in zip(denoise["psnr_input"], denoise["psnr_denoised"])), denoise
    assert "test denoising (salt_pepper), PSNR dB of input → denoised by level: 0.1:" in summary(metrics, tmp_path)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["corruption=salt_pepper", "corruption.level=2"], r"corruption.level=2: salt_pepper needs the probability"),
        (
            ["evaluation.denoise=true"],
            r"evaluation.methods.denoise cannot run here: it needs a guide trained on corrupted inputs, and the run has corruption=none .* evaluation.denoise=false",
        ),
        (
            ["corruption=mask", "evaluation.denoise_levels=[0.2,1.5]"],
            r"evaluation.denoise_levels=\[0.2, 1.5\] is invalid: expected a non-empty list of levels above 0 and at most 1 for corruption=mask",
        ),
        (["corruption=mask", "guide=local", "data.binarize=fixed"], r"corruption=mask corrupts what the guide sees, but LocalNormal keeps parameters"),
    ],
)
def test_bad_denoising_settings_are_refused_at_start(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train(compose_config(*TINY, *SMALL_NETS, *overrides), tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()
