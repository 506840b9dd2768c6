"""What a model or guide can do, declared by the program rather than guessed by the suite.

A program states what the estimators and the training loop need to know of it as a class
attribute (or property) ``capabilities = Capabilities(...)``; :func:`capabilities_of` is the one
place that reads it. A program that declares nothing gets :data:`UNDECLARED`. The suite's
shipped programs declare theirs; a user's program (``model=program``) may declare its own on the
object or function that ``model.program`` names.
"""

from dataclasses import dataclass

__all__ = ["UNDECLARED", "Capabilities", "capabilities_of"]


@dataclass(frozen=True)
class Capabilities:
    """:param amortized: (a guide) q(z|x) exists for any x; ``False`` for a guide with
        parameters per training point, which must be fitted to new points before they are
        evaluated (it then has ``add_points(x)`` and ``fit_steps``).
    :param untraceable: why a recorded objective (``objective=jit_trace_elbo`` or
        ``graph_trace_elbo``, which replay what the program did in Python when recorded) cannot
        take this program; ``None`` where it can.
    :param exact_log_px: (a model) it has ``exact_log_px(x)``, a closed-form log p(x) per point.
    :param discrete_x: (a model) its observation sites are probability mass functions over the
        data's levels, so that log p(x) converts to bits per dimension.
    :param batch_keys: the keyword arguments the program takes per data point besides x (say
        ``("y",)`` for ``model(x, y=None)``), which the dataset provides and the suite slices
        with x (:meth:`inference.data.Dataset.batch_extra`). A model and its guide are called
        with the same arguments, so they declare the same keys.
    :param sequences: the program takes whole sequences, x of shape ``(B, T, x_dim)``, as
        data points (:attr:`inference.data.Dataset.frames`); a model and its guide agree on it.
    :param classifier: (a guide) ``classify(x)`` gives the logits of q(y | x), computed by its
        network ``classifier`` (an ``nn.Module`` the supervised-only baseline retrains).
    :param denoising: (a guide) it was trained on corrupted inputs: ``corruption`` corrupts, and
        ``guide`` is the guide it wraps, which it is in eval mode.
    :param encoder: (a guide) one module ``encoder`` (a network, or a table of points) maps x to the parameters of q(z | x): the
        gap decomposition replaces it by a table of per-point outputs (the guide's local family).
    :param posterior_params: (a guide) ``posterior_params(x)`` gives the loc and scale of its
        diagonal Normal q(z | x), where the gaps' local flow starts.
    :param rollouts: (a model of sequences) ``roll_forward``, ``frame`` and ``transition``, which
        forecasts roll forward; ``learned_constants``: its transition's ``constants()`` are the
        simulator's constants by name, as learned; ``intervenable``: the per-sequence sites that
        ``poutine.do`` may set in ``roll_forward`` (the physics transition's drive amplitude).
    """

    amortized: bool = True
    untraceable: str | None = None
    exact_log_px: bool = False
    discrete_x: bool = False
    batch_keys: tuple[str, ...] = ()
    sequences: bool = False
    classifier: bool = False
    encoder: bool = False
    posterior_params: bool = False
    denoising: bool = False
    rollouts: bool = False
    learned_constants: bool = False
    intervenable: tuple[str, ...] = ()


# A program that says nothing: amortized, taking x alone, and not recordable, since a recording
# would silently fix whatever the program decides in Python.
UNDECLARED = Capabilities(untraceable="it does not declare Capabilities(untraceable=None), which says it decides nothing in Python from values")


def capabilities_of(program: object) -> Capabilities:
    """The capabilities ``program`` declares, or :data:`UNDECLARED`."""
    declared = getattr(program, "capabilities", None)
    if declared is None:
        return UNDECLARED
    if not isinstance(declared, Capabilities):
        raise TypeError(f"{type(program).__name__}.capabilities is a {type(declared).__name__}, not a models.capabilities.Capabilities")
    return declared
