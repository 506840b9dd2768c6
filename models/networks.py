"""Plain ``nn.Module`` networks shared by decoders and encoders, sized from the data and latent."""

from collections.abc import Sequence

from torch import nn

__all__ = ["MLP"]


def _activation(name: str) -> nn.Module:
    # A torch.nn class name ("ReLU", "Tanh", "ELU", ...), so that a config can say
    # `decoder.activation=Tanh` without a registry of our own.
    module = getattr(nn, name, None)
    if not (isinstance(module, type) and issubclass(module, nn.Module)):
        raise ValueError(
            f"MLP: activation {name!r} is not a torch.nn module; use a class name such as "
            "'ReLU', 'Tanh', 'ELU' or 'Softplus'"
        )
    return module()


class MLP(nn.Sequential):
    """A fully connected network ``in_features -> *hidden -> out_features``.

    The output layer is linear: likelihoods and guides map it to distribution parameters.

    :param int in_features: input size (the latent for a decoder, the data for an encoder).
    :param int out_features: output size (the distribution parameters).
    :param hidden: widths of the hidden layers; empty for a linear map.
    :param str activation: a ``torch.nn`` activation class name.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (200, 200),
        activation: str = "ReLU",
    ):
        widths = [in_features, *hidden, out_features]
        if any(int(w) != w or w <= 0 for w in widths):
            raise ValueError(f"MLP: layer widths must be positive integers, got {widths}")
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(int(n_in), int(n_out)))
            if i < len(widths) - 2:
                layers.append(_activation(activation))
        super().__init__(*layers)
