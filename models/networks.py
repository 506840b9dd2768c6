"""Plain ``nn.Module`` networks for decoders and encoders, sized from the data and latent.

Every network maps ``(..., in_features)`` to ``(..., out_features)`` over any leading dims
(particles, data points). The convolutional ones also take ``image_shape``, the (H, W) of one
flat gray data point or the (C, H, W) of a colour one (channel first, as the data holds it), and
work for any size (28×28, 28×20, 8×8, ...).
"""

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "ConvEncoder", "ConvDecoder", "RotatingDecoder"]


def _activation(name: str) -> nn.Module:
    # A torch.nn class name ("ReLU", "Tanh", "ELU", ...), so that a config can say
    # `decoder.activation=Tanh` without a registry of our own.
    module = getattr(nn, name, None)
    if not (isinstance(module, type) and issubclass(module, nn.Module)):
        raise ValueError(
            f"activation {name!r} is not a torch.nn module; use a class name such as "
            "'ReLU', 'Tanh', 'ELU' or 'Softplus'"
        )
    return module()


def _check_widths(name: str, widths: Sequence[int]) -> None:
    if any(isinstance(w, bool) or int(w) != w or w <= 0 for w in widths):
        raise ValueError(f"{name}: layer widths must be positive integers, got {list(widths)}")


class MLP(nn.Sequential):
    """A fully connected network ``in_features -> *hidden -> out_features``.

    The output layer is linear: likelihoods and guides map it to distribution parameters.

    :param hidden: widths of the hidden layers; empty for a linear map.
    :param str activation: a ``torch.nn`` activation class name.
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (200, 200), activation: str = "ReLU"):
        widths = [in_features, *hidden, out_features]
        _check_widths("MLP", widths)
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(int(n_in), int(n_out)))
            if i < len(widths) - 2:
                layers.append(_activation(activation))
        super().__init__(*layers)


def _image_shape(name: str, image_shape: Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) of a gray (H, W) or a (C, H, W) image."""
    if len(image_shape) not in (2, 3):
        raise ValueError(f"{name} needs image data with an (H, W) or (C, H, W) image_shape, got {tuple(image_shape)}; use an MLP for flat data")
    return tuple(int(n) for n in (1, *image_shape)[-3:])


class ConvEncoder(nn.Module):
    """Strided convolutions (each halving H and W), then a linear layer to ``out_features``.

    :param channels: output channels of each 3×3, stride-2 convolution.
    """

    def __init__(self, in_features: int, out_features: int, image_shape: Sequence[int], channels: Sequence[int] = (32, 64), activation: str = "ReLU"):
        super().__init__()
        C, H, W = self.image_shape = _image_shape("ConvEncoder", image_shape)
        if C * H * W != in_features:
            raise ValueError(f"ConvEncoder: image_shape {C}x{H}x{W} does not hold {in_features} values")
        _check_widths("ConvEncoder", [*channels, out_features])
        layers, c_in = [], C
        for c in channels:
            layers += [nn.Conv2d(c_in, int(c), kernel_size=3, stride=2, padding=1), _activation(activation)]
            c_in = int(c)
            H, W = math.ceil(H / 2), math.ceil(W / 2)
        self.convs = nn.Sequential(*layers, nn.Flatten())
        self.linear = nn.Linear(c_in * H * W, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_shape = x.shape[:-1]
        h = self.convs(x.reshape(-1, *self.image_shape))  # (N, C·h·w)
        return self.linear(h).reshape(*batch_shape, -1)


class ConvDecoder(nn.Module):
    """A linear layer to a small feature map, transposed convolutions (each doubling H and W),
    a crop to the image size, and a 3×3 convolution to one map per likelihood parameter and channel.

    The output ``(..., P·H·W)`` holds the P parameter maps side by side, as likelihoods expect.

    :param channels: channels of the feature map and after each transposed convolution.
    """

    def __init__(self, in_features: int, out_features: int, image_shape: Sequence[int], channels: Sequence[int] = (64, 32), activation: str = "ReLU"):
        super().__init__()
        C, H, W = self.image_shape = _image_shape("ConvDecoder", image_shape)
        if out_features % (C * H * W):
            raise ValueError(f"ConvDecoder: {out_features} outputs are not a whole number of {C}x{H}x{W} images")
        _check_widths("ConvDecoder", [in_features, *channels])
        self.params_per_pixel = out_features // (H * W)
        channels = [int(c) for c in channels]
        ups = len(channels) - 1
        self.start = (channels[0], math.ceil(H / 2**ups), math.ceil(W / 2**ups))
        self.linear = nn.Sequential(nn.Linear(in_features, math.prod(self.start)), _activation(activation))
        layers = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1), _activation(activation)]
        self.deconvs = nn.Sequential(*layers)
        self.out = nn.Conv2d(channels[-1], self.params_per_pixel, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch_shape = z.shape[:-1]
        _, H, W = self.image_shape
        h = self.linear(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start)
        h = self.out(self.deconvs(h)[..., :H, :W])  # (N, P·C, H, W): parameter p of channel c is map p·C + c
        return h.reshape(*batch_shape, -1)


class RotatingDecoder(nn.Module):
    """A learned image turned about its centre by the angle its input points to
    (``decoder=rotating``): the emission of an object that only turns, such as the pendulum.

    The input's first two features are read as a direction (cos θ, sin θ), normalized, so that
    the decoder of ``transition=physics`` (whose emission is exactly that) draws the learned
    template at angle θ by bilinear resampling. Since the drawing turns with θ at the rate the
    image turns, θ is the image's angle up to an offset and a reflection: the state cannot
    reach the pendulum's angles through a stretched or folded map, as an MLP decoder's can.

    :param int in_features: at least 2; features after the first two are ignored.
    :param float gain: the image is ``gain`` times its parameter, so that an optimizer's steps,
        sized for network weights (Adam's 1e-3), move a pixel's value ``gain`` times as fast:
        a likelihood's parameters span several units (logits of ±5), which every pixel must
        reach on its own, with no layer before it to scale it.
    """

    def __init__(self, in_features: int, out_features: int, image_shape: Sequence[int], gain: float = 20.0):
        super().__init__()
        _, H, W = self.image_shape = _image_shape("RotatingDecoder", image_shape)
        if in_features < 2:
            raise ValueError(f"RotatingDecoder reads an angle from 2 features (cos, sin), but gets {in_features}; use it with transition=physics")
        if out_features % (H * W):
            raise ValueError(f"RotatingDecoder: {out_features} outputs are not a whole number of {H}x{W} maps")
        self.gain = float(gain)
        self.template = nn.Parameter(0.01 / self.gain * torch.randn(1, out_features // (H * W), H, W))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch_shape = z.shape[:-1]
        direction = z.reshape(-1, z.shape[-1])[:, :2]
        # a state that is not finite (a diverging HMC or filter step) draws a NaN image: torch's
        # grid_sample would read it as a finite one, and its backward crashes the process at NaN
        finite = torch.isfinite(direction).all(-1)
        direction = torch.where(finite[:, None], direction, torch.ones_like(direction))
        cos, sin = (direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-6)).unbind(-1)
        # the sampling grid of the rotation, (x, y) -> (cos x - sin y, sin x + cos y), at the pixel
        # centres: what affine_grid gives, without its batched 3x2 products (a sixth of a
        # particle filter's time on the pendulum)
        _, H, W = self.image_shape
        xs = (torch.arange(W, device=z.device, dtype=z.dtype) * 2 + 1) / W - 1
        ys = ((torch.arange(H, device=z.device, dtype=z.dtype) * 2 + 1) / H - 1)[:, None]
        cos, sin = cos[:, None, None], sin[:, None, None]
        grid = torch.stack([cos * xs - sin * ys, sin * xs + cos * ys], -1)  # (N, H, W, 2)
        template = (self.gain * self.template).expand(len(grid), *self.template.shape[1:])
        turned = nn.functional.grid_sample(template, grid, padding_mode="border", align_corners=False)
        turned = torch.where(finite[:, None, None, None], turned, torch.nan)
        return turned.reshape(*batch_shape, -1)
