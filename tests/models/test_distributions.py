"""The Bernoulli with a fused log-probability gives torch's numbers, extreme logits included."""

import pyro.distributions as dist
import torch

from models.distributions import LogitBernoulli


def test_logit_bernoulli_matches_torch_bernoulli_at_extreme_logits():
    logits = torch.tensor([[-80.0, -5.0, 0.0, 5.0, 80.0]]).expand(2, 5)
    x = torch.tensor([[0.0, 1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0, 0.0]])
    ours = LogitBernoulli(logits=logits).log_prob(x)
    assert torch.isfinite(ours).all()
    assert torch.allclose(ours, dist.Bernoulli(logits=logits).log_prob(x), atol=1e-6)
    assert isinstance(LogitBernoulli(logits=torch.zeros(3)).expand((4, 3)), LogitBernoulli)
