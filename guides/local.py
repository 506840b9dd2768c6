"""The non-amortized Gaussian guide: free loc and scale for every data point it knows.

It is the gold standard of the diagonal family and the reference of the amortization gap
(Cremer, Li & Duvenaud 2018): nothing ties one point's posterior to another's, so with its
parameters optimized for each point its ELBO is the best the family can reach. It cannot guess
q(z|x) for a new x; the points to be evaluated are added with :meth:`LocalNormal.add_points` and
fitted by SVI with the model fixed (``inference.estimators.gaps.fit_local``) before they are scored.
"""

import torch
from torch import nn

from models.capabilities import Capabilities

from .normal import AmortizedNormal

__all__ = ["PointTable", "LocalNormal"]


class PointTable(nn.Module):
    """An "encoder" for a fixed set of points: a table of free outputs, one row per point.

    A forward pass looks each input row up among the points by a hash (a fixed random projection,
    sorted), so lookups cost O(B·D + B log N) rather than comparing every input with every point,
    and checks that the row found is the input itself.

    The points are not saved in the state dict (they are the data, rebuilt with the guide); the
    outputs are.
    """

    def __init__(self, points: torch.Tensor, init: torch.Tensor):
        super().__init__()
        if points.ndim != 2 or init.shape[0] != points.shape[0]:
            raise ValueError(f"PointTable: need (N, D) points and (N, ...) outputs, got {tuple(points.shape)} and {tuple(init.shape)}")
        # A generator of its own: building the table must not move the global RNG of the run.
        projection = torch.randn(points.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        self.register_buffer("projection", projection.to(points.device), persistent=False)
        self.register_buffer("points", points.detach().clone(), persistent=False)
        self.outputs = nn.Parameter(init.detach().clone())
        self._index()

    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.projection.dtype) @ self.projection

    def _index(self) -> None:
        """Sort the points' keys; buffers, so that they move with the module."""
        keys, order = torch.sort(self._keys(self.points))
        self.register_buffer("_sorted_keys", keys, persistent=False)
        self.register_buffer("_order", order, persistent=False)

    def _candidates(self, x: torch.Tensor) -> torch.Tensor:
        """The row whose key is next above just below each input's: the same point may hash a
        last bit differently in a batch of another size."""
        keys = self._keys(x)
        found = torch.searchsorted(self._sorted_keys, keys - 1e-9 * (1 + keys.abs()))
        return self._order[found.clamp(max=len(self._order) - 1)]

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """The table row of each input; a ValueError names inputs the table does not hold."""
        rows = self._candidates(x)
        missed = ~(self.points[rows] == x).all(-1)
        if missed.any():
            matches = (x[missed, None, :] == self.points[None]).all(-1)
            if not matches.any(-1).all():
                raise ValueError(
                    f"this local guide has free parameters for {len(self._order)} points only and was given others; "
                    "add them with add_points and fit them first"
                )
            rows[missed] = matches.float().argmax(-1)
        return rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs[self.rows(x)]

    def add(self, points: torch.Tensor, init: torch.Tensor) -> None:
        """Append a row starting at ``init`` (one output vector) for each distinct point of
        ``points`` that the table does not hold yet."""
        known = (self.points[self._candidates(points)] == points).all(-1)
        points = torch.unique(points[~known], dim=0)
        self.points = torch.cat([self.points, points.detach()])
        init = init.detach().to(self.outputs).expand(points.shape[0], *self.outputs.shape[1:])
        self.outputs = nn.Parameter(torch.cat([self.outputs.detach(), init]))
        self._index()


class LocalNormal(AmortizedNormal):
    """q(z|x) = N(loc_x, diag scale_x²) with free ``loc_x`` and ``scale_x`` per data point.

    Training fits the model jointly with the training points' parameters (classical SVI with
    local variational parameters); the validation ELBO is skipped during training, since the
    validation points' parameters are fitted only at evaluation.

    :param points: the training points, ``(N, x_dim)``; parameters start at the prior N(0, I).
    :param int x_dim: size of the flat data.
    :param int z_dim: size of the latent.
    :param float scale_floor: the smallest z_scale.
    :param int fit_steps: the most SVI steps with which a split's points are fitted before they
        are evaluated (the fit ends earlier once the ELBO stops rising).
    """

    capabilities = Capabilities(amortized=False, untraceable="it looks its points up with data-dependent branches", encoder=True)

    def __init__(self, points: torch.Tensor, x_dim: int, z_dim: int, scale_floor: float = 1e-3, fit_steps: int = 5000):
        if isinstance(fit_steps, bool) or not isinstance(fit_steps, int) or fit_steps <= 0:
            raise ValueError(f"LocalNormal: fit_steps must be a positive integer, got {fit_steps}")
        standard = self._standard(z_dim, scale_floor).to(points.device).expand(points.shape[0], -1)
        super().__init__(lambda i, o: PointTable(points, standard), x_dim, z_dim, scale_floor)
        self.fit_steps = fit_steps

    @staticmethod
    def _standard(z_dim: int, scale_floor: float) -> torch.Tensor:
        """The encoder output for N(0, I): loc 0 and the raw scale whose softplus + floor is 1."""
        raw = torch.log(torch.expm1(torch.tensor(1.0 - scale_floor)))
        return torch.cat([torch.zeros(z_dim), raw.expand(z_dim)])

    def add_points(self, x: torch.Tensor) -> None:
        """Give the points of ``x`` that have none their own parameters, starting at the prior."""
        self.encoder.add(x, self._standard(self.z_dim, self.scale_floor))
