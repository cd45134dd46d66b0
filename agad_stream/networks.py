"""AGAD's networks, written once for 1D ([N, C, L]) and 2D ([N, C, H, W]) inputs.

Every stage is a strided convolution (kernel 4, stride 2, padding 1, as in the
paper's naive encoder-decoder), so each stage halves every spatial size. To
accept any input size, inputs are zero-padded at the end of each spatial
dimension up to a multiple of 2**depth and outputs are cropped back to the
input's extent, so the reconstruction always has the input's shape.

The networks know nothing of data loading, normalisation or training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

CONV = {1: nn.Conv1d, 2: nn.Conv2d}
CONV_TRANSPOSE = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}
BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}


def padded_shape(spatial_shape: Sequence[int], depth: int) -> tuple[int, ...]:
    """Smallest shape >= ``spatial_shape`` whose sizes are multiples of 2**depth."""
    step = 2**depth
    return tuple(-(-int(s) // step) * step for s in spatial_shape)


def padded_and_bottom_shapes(spatial_shape: Sequence[int], depth: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The padded input shape and the spatial shape after ``depth`` stride-2 stages."""
    padded = padded_shape(spatial_shape, depth)
    return padded, tuple(s // 2**depth for s in padded)


def pad_to(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Zero-pad the spatial dimensions of ``x`` at their end up to ``shape``."""
    amounts: list[int] = []
    for have, want in zip(reversed(x.shape[2:]), reversed(shape)):
        amounts += [0, want - have]
    return F.pad(x, amounts) if any(amounts) else x


def crop_to(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    return x[(..., *(slice(0, s) for s in shape))]


def _check_ndim(ndim: int) -> None:
    if ndim not in CONV:
        raise ValueError(f"networks support 1D and 2D inputs, got ndim={ndim}")


def latent_bottleneck(ndim: int, channels: int, latent_dim: int, bottom: Sequence[int]) -> tuple[nn.Module, nn.Module]:
    """The generator's bottleneck: the deepest features to a ``latent_dim`` vector and back."""
    to_latent = CONV[ndim](channels, latent_dim, bottom, bias=False)
    from_latent = nn.Sequential(
        CONV_TRANSPOSE[ndim](latent_dim, channels, bottom, bias=False), BATCHNORM[ndim](channels), nn.ReLU(),
    )
    return to_latent, from_latent


class DownStack(nn.Module):
    """Strided conv blocks, conv -> BN -> LeakyReLU(0.2); no BN on the first block (as in DCGAN)."""

    def __init__(self, ndim: int, in_channels: int, channels: Sequence[int]):
        super().__init__()
        _check_ndim(ndim)
        blocks = []
        for i, (c_in, c_out) in enumerate(zip([in_channels, *channels[:-1]], channels)):
            layers: list[nn.Module] = [CONV[ndim](c_in, c_out, 4, 2, 1, bias=False)]
            if i > 0:
                layers.append(BATCHNORM[ndim](c_out))
            layers.append(nn.LeakyReLU(0.2))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features after each stage, finest first."""
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class EncoderDecoder(nn.Module):
    """The generator G: x -> x̂, through a ``latent_dim`` bottleneck.

    ``skip_connections=False`` is the paper's naive encoder-decoder;
    ``True`` adds UNet skips (encoder features concatenated into the decoder),
    which the paper found can hurt: anomalies get reconstructed through the skips too.
    """

    def __init__(
        self,
        ndim: int,
        in_channels: int,
        spatial_shape: Sequence[int],
        channels: Sequence[int] = (64, 128, 256),
        latent_dim: int = 100,
        skip_connections: bool = False,
    ):
        super().__init__()
        _check_ndim(ndim)
        self.padded_shape, bottom = padded_and_bottom_shapes(spatial_shape, len(channels))
        self.skip_connections = skip_connections
        self.encoder = DownStack(ndim, in_channels, channels)
        self.to_latent, self.from_latent = latent_bottleneck(ndim, channels[-1], latent_dim, bottom)
        widen = 2 if skip_connections else 1
        up = []
        for c_in, c_out in zip(reversed(channels[1:]), reversed(channels[:-1])):
            up.append(nn.Sequential(
                CONV_TRANSPOSE[ndim](c_in * widen, c_out, 4, 2, 1, bias=False),
                BATCHNORM[ndim](c_out),
                nn.ReLU(),
            ))
        up.append(CONV_TRANSPOSE[ndim](channels[0] * widen, in_channels, 4, 2, 1))
        self.decoder = nn.ModuleList(up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extent = x.shape[2:]
        features = self.encoder(pad_to(x, self.padded_shape))
        h = self.from_latent(self.to_latent(features[-1]))
        for block, skip in zip(self.decoder, reversed(features)):
            if self.skip_connections:
                h = torch.cat([h, skip], dim=1)
            h = block(h)
        return crop_to(h, extent)


class NestedUNet(nn.Module):
    """UNet++ generator (Zhou et al. 2018), the paper's best generator for images (its Table 9).

    Node X[i][j] sits at the i-th encoder resolution; X[i][0] is the encoder, and for j >= 1
    X[i][j] = conv(concat(X[i][0..j-1], up(X[i+1][j-1]))): dense skip pathways that refine
    the encoder features step by step instead of one long UNet skip. As in
    :class:`EncoderDecoder`, the deepest node is decoded from a ``latent_dim`` bottleneck, so
    the network still has to summarise the whole window.
    """

    def __init__(
        self,
        ndim: int,
        in_channels: int,
        spatial_shape: Sequence[int],
        channels: Sequence[int] = (64, 128, 256),
        latent_dim: int = 100,
    ):
        super().__init__()
        _check_ndim(ndim)
        depth = len(channels)
        self.padded_shape, bottom = padded_and_bottom_shapes(spatial_shape, depth)
        self.encoder = DownStack(ndim, in_channels, channels)
        self.to_latent, self.from_latent = latent_bottleneck(ndim, channels[-1], latent_dim, bottom)
        # up[i][j]: from level i+1 to level i, feeding X[i][j]; nodes[i][j]: fuses the j earlier nodes of level i with it.
        self.up = nn.ModuleDict()
        self.nodes = nn.ModuleDict()
        for i in range(depth - 1):
            for j in range(1, depth - i + 1):
                self.up[f"{i}_{j}"] = nn.Sequential(
                    CONV_TRANSPOSE[ndim](channels[i + 1], channels[i], 4, 2, 1, bias=False),
                    BATCHNORM[ndim](channels[i]), nn.ReLU(),
                )
                self.nodes[f"{i}_{j}"] = nn.Sequential(
                    CONV[ndim](channels[i] * (j + 1), channels[i], 3, 1, 1, bias=False),
                    BATCHNORM[ndim](channels[i]), nn.ReLU(),
                )
        self.depth = depth
        self.head = CONV_TRANSPOSE[ndim](channels[0], in_channels, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extent = x.shape[2:]
        features = self.encoder(pad_to(x, self.padded_shape))
        X = [[f] for f in features]
        # The deepest level's decoded node comes from the bottleneck, not from a skip.
        X[-1].append(self.from_latent(self.to_latent(features[-1])))
        for j in range(1, self.depth + 1):
            for i in reversed(range(min(self.depth - 1, self.depth - j + 1))):
                key = f"{i}_{j}"
                X[i].append(self.nodes[key](torch.cat([*X[i][:j], self.up[key](X[i + 1][j - 1])], dim=1)))
        return crop_to(self.head(X[0][-1]), extent)


class Discriminator(nn.Module):
    """D: x -> (real/fake logit y, feature vector z); a VGG-like conv-BN-LeakyReLU stack."""

    def __init__(
        self,
        ndim: int,
        in_channels: int,
        spatial_shape: Sequence[int],
        channels: Sequence[int] = (64, 128, 256),
    ):
        super().__init__()
        self.padded_shape, bottom = padded_and_bottom_shapes(spatial_shape, len(channels))
        self.features = DownStack(ndim, in_channels, channels)
        self.classifier = CONV[ndim](channels[-1], 1, bottom)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.features(pad_to(x, self.padded_shape))[-1]
        return self.classifier(z).flatten(), z.flatten(1)
