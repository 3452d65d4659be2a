"""The microstructure GAN of Yang, Li et al. (J. Mech. Des. 140, 111416 (2018); review 000, "Microstructure
reconstruction and design"): a generator of five transposed convolutions from a 4 × 4 latent map (16 numbers) to a
128 × 128 two-phase image, and a discriminator of five convolutions back down to one logit. Pure modules; the
adversarial training is :class:`lightning_modules.gan.AdversarialTraining`.

Two options against what a first CPU-trained generator showed (near-isotropic blobs with a checkerboard
texture): ``upsampling: resize`` doubles the side by nearest-neighbour resizing and a 3×3 convolution instead
of a stride-2 transposed convolution (whose overlapping kernels print a checkerboard, Odena et al. 2016), and
``spectral_norm`` bounds every discriminator layer's largest singular value at 1 in place of batch
normalisation (Miyato et al. 2018), so the discriminator cannot win by steep, brittle boundaries.
``periodic`` pads every convolution circularly: the training fields and the columnar elements ``make design``
scores are periodic cells, and zero padding draws seams along the image edges that neither has.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as bounded


class _PeriodicPad(torch.autograd.Function):
    """Circular padding by ``p`` pixels on both image axes, whose backward pass folds the padded borders'
    gradients back onto the image in one copy and eight small additions (torch's own circular padding
    back-propagates through nine slices, each filled with zeros and copied: 6× as slow, forward and backward,
    for a 16 × 32 × 128² batch on one AVX2 core, measured)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: int) -> torch.Tensor:
        ctx.p = p
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        out = torch.empty(*x.shape[:-2], x.shape[-2] + 2 * p, x.shape[-1] + 2 * p, dtype=x.dtype, device=x.device,
                          memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        out[..., p:-p, p:-p] = x
        out[..., :p, p:-p] = x[..., -p:, :]
        out[..., -p:, p:-p] = x[..., :p, :]
        out[..., :, :p] = out[..., :, -2 * p:-p]
        out[..., :, -p:] = out[..., :, p:2 * p]
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        p = ctx.p
        out = g[..., p:-p, p:-p].clone(memory_format=torch.preserve_format)
        out[..., :p, :] += g[..., -p:, p:-p]  # the rows padded below are the first rows, and so on
        out[..., -p:, :] += g[..., :p, p:-p]
        out[..., :, :p] += g[..., p:-p, -p:]
        out[..., :, -p:] += g[..., p:-p, :p]
        out[..., :p, :p] += g[..., -p:, -p:]  # the corners
        out[..., :p, -p:] += g[..., -p:, :p]
        out[..., -p:, :p] += g[..., :p, -p:]
        out[..., -p:, -p:] += g[..., :p, :p]
        return out, None


def periodic_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """``x`` (…, H, W) wrapped around by ``p`` pixels on each side: (…, H + 2p, W + 2p)."""
    return _PeriodicPad.apply(x, p) if p else x


class PeriodicConv2d(nn.Conv2d):
    """A convolution over periodic images: the input wrapped by ``padding`` pixels, then convolved unpadded (the
    same numbers as ``padding_mode="circular"``, back-propagated faster)."""

    def __init__(self, n_in: int, n_out: int, kernel_size: int, padding: int, **kwargs):
        super().__init__(n_in, n_out, kernel_size, padding=0, **kwargs)
        self.periodic_padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(periodic_pad(x, self.periodic_padding))


class PeriodicTransposedConv(nn.ConvTranspose2d):
    """A stride-2, 4×4 transposed convolution that doubles the side of a periodic map: the input wrapped by one
    pixel on each side, the full output cropped to the 2n pixels whose contributions wrap around the cell."""

    def __init__(self, n_in: int, n_out: int, bias: bool):
        super().__init__(n_in, n_out, 4, stride=2, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        return super().forward(periodic_pad(x, 1))[..., 3:3 + 2 * n, 3:3 + 2 * n]


def _conv(n_in: int, n_out: int, kernel_size: int, periodic: bool, **kwargs) -> nn.Conv2d:
    """A convolution padded by one pixel: circularly where the images are periodic, else with zeros."""
    return (PeriodicConv2d if periodic else nn.Conv2d)(n_in, n_out, kernel_size, padding=1, **kwargs)


class Generator(nn.Module):
    """(n, latent_side²) latent vectors → (n, 1, S, S) images with values in (0, 1), S = latent_side · 2⁵."""

    def __init__(self, latent_side: int = 4, channels: tuple[int, ...] = (256, 128, 64, 32),
                 upsampling: str = "transposed", periodic: bool = False):
        super().__init__()
        if upsampling not in ("transposed", "resize"):
            raise ValueError(f"upsampling must be 'transposed' or 'resize', got {upsampling!r}")
        self.latent_side = latent_side
        layers, width = [], 1
        for out in channels:  # each doubles the side: 4 → 8 → 16 → 32 → 64
            layers += [self._double(width, out, upsampling, periodic, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True)]
            width = out
        layers += [self._double(width, 1, upsampling, periodic, bias=True), nn.Sigmoid()]  # the fifth: → 128
        self.layers = nn.Sequential(*layers)

    @staticmethod
    def _double(n_in: int, n_out: int, upsampling: str, periodic: bool, bias: bool) -> nn.Module:
        if upsampling == "transposed":
            if periodic:
                return PeriodicTransposedConv(n_in, n_out, bias)
            return nn.ConvTranspose2d(n_in, n_out, 4, stride=2, padding=1, bias=bias)
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _conv(n_in, n_out, 3, periodic, bias=bias))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z.reshape(len(z), 1, self.latent_side, self.latent_side))


class Discriminator(nn.Module):
    """(n, 1, S, S) images → (n, 1) logits of "drawn from the training images"."""

    def __init__(self, size: int = 128, channels: tuple[int, ...] = (32, 64, 128, 256), spectral_norm: bool = False,
                 periodic: bool = False):
        super().__init__()
        wrap = bounded if spectral_norm else (lambda layer: layer)
        layers, width = [], 1
        for i, out in enumerate(channels):  # each halves the side: 128 → 64 → 32 → 16 → 8
            layers += [wrap(_conv(width, out, 4, periodic, stride=2, bias=i == 0 or spectral_norm))]
            layers += [nn.BatchNorm2d(out)] if i > 0 and not spectral_norm else []
            layers += [nn.LeakyReLU(0.2, inplace=True)]
            width = out
        side = size // 2 ** len(channels)
        layers += [wrap(nn.Conv2d(width, 1, side)), nn.Flatten()]  # the fifth: the whole remaining map → one logit
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


class MicrostructureGAN(nn.Module):
    """The generator and the discriminator, sized for ``n_features``-pixel square images (linked from the data).

    Args:
        n_features: the image side (128 in the paper); must be ``latent_side · 2⁵``.
        latent_side: the latent map is ``latent_side × latent_side`` (4: a 16-dimensional design space).
        generator_channels / discriminator_channels: the hidden widths of the four inner layers of each.
        upsampling: ``transposed`` (the paper's transposed convolutions) or ``resize`` (resize, then convolve).
        spectral_norm: spectrally normalised discriminator layers instead of batch normalisation.
        periodic: circular padding in every convolution of both nets (periodic images, no edge seams).
    """

    def __init__(self, n_features: int = 128, latent_side: int = 4,
                 generator_channels: tuple[int, ...] = (256, 128, 64, 32),
                 discriminator_channels: tuple[int, ...] = (32, 64, 128, 256),
                 upsampling: Literal["transposed", "resize"] = "transposed", spectral_norm: bool = False,
                 periodic: bool = False):
        super().__init__()
        side = latent_side * 2 ** (len(generator_channels) + 1)
        if side != n_features:
            raise ValueError(f"a {latent_side}×{latent_side} latent map through {len(generator_channels) + 1} "
                             f"doubling layers gives {side}-pixel images, not {n_features}")
        self.latent_dim = latent_side**2
        self.generator = Generator(latent_side, tuple(generator_channels), upsampling, periodic)
        self.discriminator = Discriminator(n_features, tuple(discriminator_channels), spectral_norm, periodic)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images for latent vectors."""
        return self.generator(z)
