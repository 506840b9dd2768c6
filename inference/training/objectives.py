"""Training objectives beyond the plain ELBO: a weighted KL term and its warm-up, a lean path
through ``Trace_ELBO`` for fully reparameterized guides, and that path recorded as a graph.

Pyro's ELBOs are used as they are (``TraceMeanField_ELBO``, ``RenyiELBO``) or with that lean
path (:class:`LeanTrace_ELBO`, what ``objective=trace_elbo`` uses; :class:`GraphTrace_ELBO`,
``objective=graph_trace_elbo``, replays it without Pyro's Python);
:class:`KLWeighted` wraps any of them and scales the log densities of the latent sites, in the
model and the guide alike, so that the objective becomes
E_q[log p(x|z)] − w·(E_q[log q(z|x)] − E_q[log p(z)]) = reconstruction − w·KL.
"""

import functools
import warnings
from collections import OrderedDict
from collections.abc import Callable

import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, config_enumerate
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from models.registration import unregistered

from ..estimators.programs import replayed_traces

__all__ = ["EnumeratedTrace_ELBO", "GraphTrace_ELBO", "KLWeighted", "LeanTrace_ELBO", "WithClassification", "kl_weight"]


class LeanTrace_ELBO(Trace_ELBO):
    """``Trace_ELBO`` with the same single-sample estimate and the same gradients, computed
    directly where it can be: one particle, Pyro's validation off, and every guide site
    reparameterized. Then the loss is log q(z|x) − log p(x, z) from the guide's trace and the
    model replayed on it (``Trace.log_prob_sum``, which applies scales and masks), without
    Trace_ELBO's score-function and enumeration bookkeeping, which such a guide does not need.
    Anything else goes through ``Trace_ELBO`` itself.

    The lean path runs the programs :func:`~models.registration.unregistered`: their networks
    are not put into Pyro's param store, because its caller (the training step) optimizes the
    modules' parameters directly. Pyro's idiom of capturing the parameters of
    ``differentiable_loss`` with ``poutine.trace(param_only=True)`` finds none here; use
    ``Trace_ELBO`` for that."""

    def differentiable_loss(self, model, guide, *args, **kwargs):
        loss = self._lean_loss(model, guide, *args, **kwargs) if self._lean_applies() else None
        return super().differentiable_loss(model, guide, *args, **kwargs) if loss is None else loss

    def _lean_applies(self) -> bool:
        """One particle and validation off: the settings under which the lean path is taken."""
        return self.num_particles == 1 and not is_validation_enabled()

    def _lean_loss(self, model, guide, *args, **kwargs):
        """The loss from the two traces, or None where a guide site needs score-function terms."""
        with unregistered():
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            latent = [s for s in guide_trace.nodes.values() if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)]
            if not all(site["fn"].has_rsample for site in latent):
                return None
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        return guide_trace.log_prob_sum() - model_trace.log_prob_sum()


class GraphTrace_ELBO(LeanTrace_ELBO):
    """:class:`LeanTrace_ELBO` recorded once per batch shape as a graph of tensor operations
    (``torch.fx``'s ``make_fx``, which runs the programs once and keeps the ATen operations they
    did) and replayed on every later batch of that shape. Replay skips everything Python did:
    Pyro's effect handlers, distribution objects, plates. Autograd runs on the replayed
    operations as on any others, so gradients, optimizer and checks are unchanged. Loss and
    gradients equal the lean path's from the same random numbers (tested); the random draws
    are operations of the graph, so every replay draws anew, from the same stream as the lean
    path would (the recording step restores the RNG state it consumed).

    What a recording keeps fixed, as with ``JitTrace_ELBO``: everything the programs decided in
    Python. Shapes are part of the key (the last, smaller batch has its own graph), and so are
    the programs and their train/eval modes (a KL weight that changes makes new programs, see
    :class:`KLWeighted`); but a program whose Python-side branches depend on values, or on
    state that changes between steps, is replayed as it ran when recorded. Such a program must use ``objective=trace_elbo``.
    Validation on, more than one particle, or arguments other than one tensor take the lean
    path instead.

    :param int max_graphs: graphs kept, the most recently used (a warm-up records one per epoch).
    """

    def __init__(self, *args, max_graphs: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_graphs = max_graphs
        # key -> (model, guide, graph); the programs are held so that their ids stay unique
        self._graphs: OrderedDict = OrderedDict()

    def differentiable_loss(self, model, guide, *args, **kwargs):
        if kwargs or len(args) != 1 or not torch.is_tensor(args[0]) or not self._lean_applies():
            return super().differentiable_loss(model, guide, *args, **kwargs)
        (x,) = args
        key = (id(model), id(guide), getattr(model, "training", None), getattr(guide, "training", None), tuple(x.shape), x.dtype, x.device)
        if key not in self._graphs:
            self._graphs[key] = (model, guide, self._record(model, guide, x))
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        self._graphs.move_to_end(key)
        graph = self._graphs[key][2]
        return super().differentiable_loss(model, guide, x) if graph is None else graph(x)

    def _record(self, model, guide, x: torch.Tensor) -> torch.fx.GraphModule | None:
        """The lean loss as a graph, or None where the lean path does not apply (a guide that
        is not reparameterized: Trace_ELBO's surrogate reads a value back, which a graph would fix)."""
        from torch.fx.experimental.proxy_tensor import make_fx

        def loss(x):
            value = self._lean_loss(model, guide, x)
            if value is None:
                raise _NotLean
            return value

        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the replay draws what this recording drew
            try:
                graph = make_fx(loss)(x)
            except _NotLean:
                return None
        graph.graph.eliminate_dead_code()  # random draws are in-place operations, so they stay
        graph.recompile()
        return graph


class EnumeratedTrace_ELBO(TraceEnum_ELBO):
    """``TraceEnum_ELBO`` with every discrete site of the guide enumerated in parallel
    (``config_enumerate``), so that a guide written without ``infer={"enumerate": ...}`` is
    summed over exactly: what ``objective=trace_enum_elbo`` uses. Sites already marked keep
    their marks."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._enumerated: dict = {}  # guide -> the guide enumerated, the same while the guide is

    def _enumerate(self, model, guide, *args, **kwargs):
        """The guide enumerated; the first time, a warning if neither program has a site to
        enumerate (Pyro says so only with validation on, which runs turn off)."""
        if guide not in self._enumerated:
            enumerated = config_enumerate(guide, "parallel")
            guide_trace, model_trace = replayed_traces(model, enumerated, *args, **kwargs)
            sites = [site for trace in (guide_trace, model_trace) for site in trace.nodes.values() if site["type"] == "sample"]
            if not any(site["infer"].get("enumerate") for site in sites):
                warnings.warn(
                    "objective=trace_enum_elbo: the guide has no discrete sample site to enumerate (nor the model), so it "
                    "trains as objective=trace_elbo would, only slower; use objective=trace_elbo",
                    UserWarning,
                    stacklevel=3,
                )
            self._enumerated[guide] = enumerated
        return self._enumerated[guide]

    def differentiable_loss(self, model, guide, *args, **kwargs):
        return super().differentiable_loss(model, self._enumerate(model, guide, *args, **kwargs), *args, **kwargs)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        return super().loss_and_grads(model, self._enumerate(model, guide, *args, **kwargs), *args, **kwargs)


class _NotLean(Exception):
    """Raised inside a recording whose programs need Trace_ELBO's score-function terms."""


class _ScaleLatentSites(Messenger):
    """Multiply the log density of every latent (unobserved) sample site by ``weight``."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight

    def _process_message(self, msg):
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["scale"] = msg["scale"] * self.weight


def kl_weight(loss) -> float:
    """The weight of the KL term in ``loss`` now: :class:`KLWeighted`'s, through wrappers that
    keep the ELBO in ``.loss`` (:class:`WithClassification`); 1 for a plain ELBO."""
    while loss is not None and not hasattr(loss, "weight"):
        loss = getattr(loss, "loss", None)
    return 1.0 if loss is None else float(loss.weight)


class KLWeighted:
    """An ELBO whose KL term is weighted by w = β·min(1, epoch / warmup_epochs).

    β-VAE (Higgins et al. 2017) with β ≠ 1; a linear KL warm-up (Bowman et al. 2016; Sønderby
    et al. 2016) with ``warmup_epochs`` > 0, epoch counted from 0. With β = 1 and no warm-up
    it is the wrapped loss itself, unchanged.

    With ``TraceEnum_ELBO`` the guide's discrete sites are enumerated, and the weight scales
    their log-density terms, not the enumeration's probabilities: the loss is
    −Σ_c q(c|x) [log p(x|c, …) + w·(log p(c) − log q(c|x))]. A site the model enumerates (one
    the guide does not sample) is summed out inside log p(x|…); there the weight cannot apply,
    so a weight other than 1 is refused for such a model.

    :param loss: a factory of a Pyro ELBO (``Trace_ELBO``, ``RenyiELBO``, ``TraceEnum_ELBO``,
        ...), called with ``num_particles``, ``vectorize_particles`` and ``max_plate_nesting``.
    :param float beta: the weight of the KL term once warmed up.
    :param int warmup_epochs: epochs over which the weight rises linearly from 0 to β.
    :param int num_particles: samples of z per data point in each step, vectorized.
    :param max_plate_nesting: the programs' plates; None (the default) lets Pyro find it from a
        first trace where it needs it (vectorized particles, enumeration), so that the
        particles go left of every plate a program uses, plates inside the data plate included.
    """

    def __init__(
        self, loss: Callable[..., object], beta: float = 1.0, warmup_epochs: int = 0, num_particles: int = 1, max_plate_nesting: int | None = None
    ):
        if not beta >= 0 or warmup_epochs < 0 or num_particles < 1:
            raise ValueError(
                f"KLWeighted: needs beta ≥ 0, warmup_epochs ≥ 0 and num_particles ≥ 1, got {beta}, {warmup_epochs} and {num_particles}"
            )
        nesting = {} if max_plate_nesting is None else {"max_plate_nesting": max_plate_nesting}
        self._new_loss = functools.partial(loss, num_particles=num_particles, vectorize_particles=num_particles > 1, **nesting)
        self.loss = self._new_loss()
        self._checked: set = set()  # (model, guide) pairs whose enumeration is known to take the weight
        self.beta, self.warmup_epochs = beta, warmup_epochs
        self.weight = beta if warmup_epochs == 0 else 0.0
        self._wrapped: dict = {}  # program -> the program weighted by self.weight
        # Offer differentiable_loss only where the wrapped loss has one (RenyiELBO has not),
        # so that the training step can tell which way to take the gradient.
        if hasattr(self.loss, "differentiable_loss"):
            self.differentiable_loss = self._differentiable_loss

    def set_epoch(self, epoch: int) -> None:
        """Called by the training loop before each epoch (counted from 0)."""
        ramp = 1.0 if self.warmup_epochs == 0 else min(1.0, epoch / self.warmup_epochs)
        if self.beta * ramp != self.weight:
            # A new weight gets a new loss: a compiling ELBO (Pyro's JitTrace_ELBO) runs the
            # programs it was first given for good, so the newly weighted ones would never run.
            self.loss = self._new_loss()
        self.weight = self.beta * ramp

    def _weighted(self, program):
        if self.weight == 1.0:
            return program
        # the same wrapped program while the weight stays: a recorded objective
        # (GraphTrace_ELBO) knows its programs by identity, and a new weight is a new program
        weight, wrapped = self._wrapped.get(program, (None, None))
        if weight != self.weight:
            wrapped = _ScaleLatentSites(self.weight)(program)
            self._wrapped[program] = (self.weight, wrapped)
        return wrapped

    def _differentiable_loss(self, model, guide, *args, **kwargs):
        self._check_enumeration(model, guide, *args, **kwargs)
        return self.loss.differentiable_loss(self._weighted(model), self._weighted(guide), *args, **kwargs)

    def _check_enumeration(self, model, guide, *args, **kwargs) -> None:
        """Refuse a KL weight for a model that enumerates a site itself (checked once a pair)."""
        if not isinstance(self.loss, TraceEnum_ELBO) or (self.beta == 1.0 and self.warmup_epochs == 0) or (model, guide) in self._checked:
            return
        with torch.no_grad(), poutine.block():
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        summed = sorted(
            name for name, site in model_trace.nodes.items()
            if site["type"] == "sample" and site["infer"].get("enumerate") and name not in guide_trace.nodes
        )
        if summed:
            raise ValueError(
                f"objective.beta and objective.warmup_epochs weight the KL term of the guide's sites, but the model "
                f"enumerates {summed} itself, which the weight cannot reach; use objective.beta=1 objective.warmup_epochs=0"
            )
        self._checked.add((model, guide))

    def loss_and_grads(self, model, guide, *args, **kwargs):
        return self.loss.loss_and_grads(self._weighted(model), self._weighted(guide), *args, **kwargs)

    def recorded(self) -> "KLWeighted | None":
        """This objective with its ELBO recorded as a graph (:class:`GraphTrace_ELBO`: the same
        loss and gradients, which a captured step needs), where its ELBO is
        :class:`LeanTrace_ELBO` itself with one particle (``objective=trace_elbo``); None for
        any other, which has no recorded form. The weight, its warm-up and the epoch's weight
        carry over."""
        if type(self.loss) is not LeanTrace_ELBO or self.loss.num_particles != 1:
            return None
        other = KLWeighted(GraphTrace_ELBO, self.beta, self.warmup_epochs, 1, self._new_loss.keywords.get("max_plate_nesting"))
        other.weight = self.weight
        return other


class WithClassification:
    """The semi-supervised objective of Kingma et al. (2014, eq. 9): the bound ``loss`` over
    labelled and unlabelled points (``objective=ss_elbo``: y summed out exactly where it is not
    observed) plus α·Σ −log q(y | x) over the batch's labelled points, which trains the
    classifier on the labels as well as through the bound. The term is the objective's, not a
    site of the model, so it never enters log p̂(x).

    The paper sets α = 0.1·N with the classification term a mean over the labelled points, where
    the bound sums over all N points; per labelled point, as a batch sums it here, that is
    α = 0.1·N / N_labelled, what ``aux_weight=None`` takes (:meth:`fit_to`; 50 for MNIST's
    50,000 points with 100 labels). With ``data.labeled_per_batch`` a labelled point comes back
    many times an epoch and α applies at every return, so that over an epoch the term weighs
    that many times more than the paper's; ``data.labeled_per_batch=auto`` shows each once an
    epoch, the paper's weight.

    :param loss: the bound, e.g. ``KLWeighted(EnumeratedTrace_ELBO)``.
    :param aux_weight: α per labelled point; None for the paper's choice.
    """

    def __init__(self, loss, aux_weight: float | None = None):
        if aux_weight is not None and not aux_weight >= 0:
            raise ValueError(f"objective.aux_weight must be at least 0 (or null for 0.1·N / N_labelled), got {aux_weight}")
        self.loss, self.aux_weight = loss, aux_weight

    def fit_to(self, num_points: int, num_labelled: int) -> None:
        """Take the paper's α for ``num_points`` training points of which ``num_labelled`` are labelled."""
        if self.aux_weight is None:
            self.aux_weight = 0.1 * num_points / max(num_labelled, 1)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loss, "set_epoch"):
            self.loss.set_epoch(epoch)

    def differentiable_loss(self, model, guide, x, y=None, mask=None):
        bound = self.loss.differentiable_loss(model, guide, x, y=y, mask=mask)
        if y is None or mask is None or not mask.any():
            return bound
        if self.aux_weight is None:
            raise ValueError("WithClassification: aux_weight is unset; call fit_to(num_points, num_labelled) first")
        log_q = torch.distributions.Categorical(logits=guide.classify(x[mask])).log_prob(y[mask]).sum()
        return bound - self.aux_weight * log_q
