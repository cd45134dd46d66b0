import pytest
import torch
from torch import nn

from agad_stream import available_generators, build_generator, register_generator
from agad_stream.batchnorm import DualBatchNorm, add_auxiliary_batchnorms
from agad_stream.networks import Discriminator

SHAPES = [(1, (288,)), (1, (100,)), (1, (37,)), (2, (32, 32)), (2, (28, 28)), (2, (64, 13))]


@pytest.mark.parametrize("name", ["naive", "unet", "unetpp"])
@pytest.mark.parametrize("ndim,shape", SHAPES)
def test_generator_reconstruction_has_input_shape(name, ndim, shape):
    generator = build_generator(name, ndim, 3, shape, channels=(8, 16, 32), latent_dim=10)
    x = torch.randn(2, 3, *shape)
    assert generator(x).shape == x.shape


@pytest.mark.parametrize("ndim,shape", SHAPES)
def test_discriminator_returns_logit_and_features(ndim, shape):
    discriminator = Discriminator(ndim, 2, shape, channels=(8, 16, 32))
    logit, features = discriminator(torch.randn(5, 2, *shape))
    assert logit.shape == (5,)
    assert features.ndim == 2 and features.shape[0] == 5


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_unetpp_builds_every_nested_node_for_any_depth(depth):
    channels = tuple(8 * 2**i for i in range(depth))
    generator = build_generator("unetpp", 2, 1, (28, 28), channels=channels, latent_dim=10)
    # X[i][j] for i < depth - 1 and 1 <= j <= depth - i: a triangle of depth*(depth+1)/2 - 1 nodes
    assert len(generator.nodes) == depth * (depth + 1) // 2 - 1
    assert generator(torch.randn(2, 1, 28, 28)).shape == (2, 1, 28, 28)


def test_three_dimensional_input_is_rejected():
    with pytest.raises(ValueError, match="1D and 2D"):
        build_generator("naive", 3, 1, (8, 8, 8))


def test_unknown_generator_names_the_registered_ones():
    with pytest.raises(ValueError, match="naive"):
        build_generator("no-such-net", 1, 1, (64,))


def test_user_generator_is_registered_and_gets_auxiliary_batchnorms():
    @register_generator("tiny-test-net")
    def tiny(ndim, in_channels, spatial_shape, **options):
        return nn.Sequential(nn.Conv1d(in_channels, 4, 3, padding=1), nn.BatchNorm1d(4), nn.Conv1d(4, in_channels, 3, padding=1))

    assert "tiny-test-net" in available_generators()
    generator = add_auxiliary_batchnorms(build_generator("tiny-test-net", 1, 2, (50,)))
    assert any(isinstance(m, DualBatchNorm) for m in generator.modules())
    assert generator(torch.randn(3, 2, 50)).shape == (3, 2, 50)
