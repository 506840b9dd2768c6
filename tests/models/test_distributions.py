"""The Bernoulli with fused log-probabilities gives torch's numbers and gradients, extreme logits included."""

import pyro.distributions as dist
import torch

from models.distributions import LogitBernoulli, LogitBernoulliEvents


def test_logit_bernoulli_matches_torch_bernoulli_at_extreme_logits():
    logits = torch.tensor([[-80.0, -5.0, 0.0, 5.0, 80.0]]).expand(2, 5)
    x = torch.tensor([[0.0, 1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0, 0.0]])
    ours = LogitBernoulli(logits=logits).log_prob(x)
    assert torch.isfinite(ours).all()
    assert torch.allclose(ours, dist.Bernoulli(logits=logits).log_prob(x), atol=1e-6)
    assert isinstance(LogitBernoulli(logits=torch.zeros(3)).expand((4, 3)), LogitBernoulli)


def test_logit_bernoulli_events_sum_the_same_log_probabilities():
    torch.manual_seed(0)
    logits = torch.cat([torch.randn(4, 2, 6) * 3, torch.full((1, 2, 6), 80.0), torch.full((1, 2, 6), -80.0)])
    x = torch.randint(0, 2, (2, 6)).float()  # broadcast against the particles on the left
    for n in (1, 2):
        ours = LogitBernoulli(logits=logits).to_event(n)
        reference = dist.Bernoulli(logits=logits).to_event(n)
        assert ours.event_shape == reference.event_shape and ours.batch_shape == reference.batch_shape
        assert torch.allclose(ours.log_prob(x), reference.log_prob(x), atol=1e-4)
    expanded = LogitBernoulli(logits=torch.zeros(6)).to_event(1).expand((3,))
    assert isinstance(expanded, LogitBernoulliEvents) and expanded.batch_shape == (3,)
    assert isinstance(LogitBernoulli(logits=torch.zeros(6)).to_event(0), LogitBernoulli)


def test_logit_bernoulli_events_have_bernoullis_gradient():
    logits = torch.randn(3, 5, requires_grad=True)
    x = torch.randint(0, 2, (3, 5)).float()
    (ours,) = torch.autograd.grad(LogitBernoulli(logits=logits).to_event(1).log_prob(x).sum(), logits)
    assert torch.allclose(ours, x - torch.sigmoid(logits), atol=1e-6)  # d/dl [x·l − softplus(l)]
