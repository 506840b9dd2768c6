"""Networks are sized from the data: any leading dims, and conv nets for every image shape."""

import pytest
import torch

from models import MLP, ConvDecoder, ConvEncoder


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


def test_conv_networks_refuse_flat_data_and_wrong_sizes():
    with pytest.raises(ValueError, match=r"needs image data with an \(H, W\) image_shape, got \(10,\)"):
        ConvEncoder(10, 4, (10,))
    with pytest.raises(ValueError, match="image_shape 8x8 does not hold 60 values"):
        ConvEncoder(60, 4, (8, 8))
    with pytest.raises(ValueError, match="100 outputs are not a whole number of 8x8 maps"):
        ConvDecoder(4, 100, (8, 8))


def test_mlp_maps_any_leading_dims_and_a_linear_map_has_no_hidden_layer():
    assert MLP(3, 5, hidden=[7])(torch.randn(2, 4, 3)).shape == (2, 4, 5)
    assert len(MLP(3, 5, hidden=[])) == 1
