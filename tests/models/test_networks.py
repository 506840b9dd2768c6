"""Networks are sized from the data: any leading dims, and conv nets for every image shape."""

import pytest
import torch

from models import MLP, ConvDecoder, ConvEncoder, RotatingDecoder


@pytest.mark.parametrize("image_shape", [(28, 28), (28, 20), (8, 8)])
def test_conv_networks_fit_every_image_shape(image_shape):
    D = image_shape[0] * image_shape[1]
    encoder = ConvEncoder(D, 12, image_shape)
    decoder = ConvDecoder(6, 3 * D, image_shape)  # three likelihood parameters per pixel
    assert encoder(torch.rand(5, 4, D)).shape == (5, 4, 12)  # (particles, batch, out)
    out = decoder(torch.randn(5, 4, 6))
    assert out.shape == (5, 4, 3 * D)
    # the parameter maps sit side by side, as likelihoods chunk them
    maps = out.reshape(5, 4, 3, D)
    assert torch.equal(out.chunk(3, -1)[1], maps[:, :, 1])


def test_colour_images_go_through_the_conv_networks_channel_first():
    """A (3, H, W) image: the encoder convolves its three channels together, and the decoder's
    output holds, for each of P likelihood parameters, a whole colour image laid out as the
    data is, channel first: parameter p of channel c is the flat block p·C + c."""
    C, H, W = 3, 10, 12
    encoder = ConvEncoder(C * H * W, 8, (C, H, W))
    assert encoder.convs[0].in_channels == 3 and encoder(torch.rand(4, C * H * W)).shape == (4, 8)
    decoder = ConvDecoder(5, 2 * C * H * W, (C, H, W))  # two parameters per value (a Gaussian's loc and scale)
    with torch.no_grad():  # each output map constant at its own index
        decoder.out.weight.zero_()
        decoder.out.bias.copy_(torch.arange(2 * C, dtype=torch.float))
    blocks = decoder(torch.randn(4, 5)).reshape(4, 2, C, H, W)  # as a likelihood chunks it, then as x's layout
    assert torch.equal(blocks[0, :, :, 0, 0], torch.tensor([[0.0, 1, 2], [3, 4, 5]]))
    assert torch.equal(blocks, blocks[..., :1, :1].expand_as(blocks))


def test_conv_networks_refuse_flat_data_and_wrong_sizes():
    with pytest.raises(ValueError, match=r"needs image data with an \(H, W\) or \(C, H, W\) image_shape, got \(10,\)"):
        ConvEncoder(10, 4, (10,))
    with pytest.raises(ValueError, match="image_shape 1x8x8 does not hold 60 values"):
        ConvEncoder(60, 4, (8, 8))
    with pytest.raises(ValueError, match="100 outputs are not a whole number of 1x8x8 images"):
        ConvDecoder(4, 100, (8, 8))


def test_mlp_maps_any_leading_dims_and_a_linear_map_has_no_hidden_layer():
    assert MLP(3, 5, hidden=[7])(torch.randn(2, 4, 3)).shape == (2, 4, 5)
    assert len(MLP(3, 5, hidden=[])) == 1


def test_the_rotating_decoder_turns_its_image_as_the_pendulum_turns():
    """With the pendulum drawn hanging down as its image, the decoder at (cos θ, sin θ) draws the
    pendulum at θ, to the error of bilinear resampling, far closer than at the mirrored angle;
    over any leading dims, and refusing an input with no direction."""
    from inference.data.pendulum import render

    decoder = RotatingDecoder(2, 16 * 16, (16, 16))
    with torch.no_grad():
        decoder.template.copy_(render(torch.zeros(1), 16).reshape(1, 1, 16, 16) / decoder.gain)
    theta = torch.tensor([[0.5, 1.3], [-2.0, 3.0]])
    drawn = decoder(torch.stack([theta.cos(), theta.sin()], -1))
    assert drawn.shape == (2, 2, 256)
    error = ((drawn - render(theta.flatten(), 16).reshape(2, 2, 256)) ** 2).mean(-1)
    mirrored = ((drawn - render(-theta.flatten(), 16).reshape(2, 2, 256)) ** 2).mean(-1)
    assert (error < 0.004).all() and (mirrored > 5 * error).all()
    with pytest.raises(ValueError, match="reads an angle from 2 features"):
        RotatingDecoder(1, 256, (16, 16))


def test_the_rotating_decoder_draws_a_state_that_is_not_finite_as_nan_and_differentiates_past_it():
    """A NaN or infinite state (a diverging HMC step of AIS) draws a NaN image, not the finite one
    torch's grid_sample makes of NaN coordinates, and the gradient of the others is what it is
    without it; before, the backward pass crashed the process (a segfault in grid_sample's)."""
    decoder = RotatingDecoder(2, 16 * 16, (16, 16))
    z = torch.randn(6, 2)
    z[2], z[4, 1] = float("nan"), float("inf")
    z.requires_grad_(True)
    drawn = decoder(z)
    assert drawn.isnan().all(-1).tolist() == [False, False, True, False, True, False]
    (grad,) = torch.autograd.grad(drawn[[0, 1, 3, 5]].sum(), z)
    clean = z.detach()[[0, 1, 3, 5]].requires_grad_(True)
    (expected,) = torch.autograd.grad(decoder(clean).sum(), clean)
    assert torch.equal(grad[[0, 1, 3, 5]], expected) and (grad[[2, 4]] == 0).all()
