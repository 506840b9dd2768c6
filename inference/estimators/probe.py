"""Did the latent space learn the ground truth? A linear probe from posterior means to factors."""

import torch

__all__ = ["linear_probe_r2"]


def linear_probe_r2(
    train_features: torch.Tensor, train_targets: torch.Tensor, test_features: torch.Tensor, test_targets: torch.Tensor
) -> torch.Tensor:
    """Fit targets ≈ features·W + b by least squares on the training pairs, and score it on the
    held-out pairs by the coefficient of determination, R² = 1 − SS_res / SS_tot, per target.

    :returns: an ``(F,)``-shaped tensor: 1 is a perfect linear read-out, 0 is no better than
        the held-out mean, and it can fall below 0.
    """
    def with_bias(features):
        return torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], -1)

    X, Y = with_bias(train_features.double().cpu()), train_targets.double().cpu()
    coefficients = torch.linalg.lstsq(X, Y).solution
    prediction = with_bias(test_features.double().cpu()) @ coefficients
    Y_test = test_targets.double().cpu()
    residual = ((Y_test - prediction) ** 2).sum(0)
    total = ((Y_test - Y_test.mean(0)) ** 2).sum(0)
    return (1 - residual / total).float()
