"""The microstructure GAN of Yang, Li et al. (J. Mech. Des. 140, 111416 (2018); review 000, "Microstructure
reconstruction and design"): a generator of five transposed convolutions from a 4 × 4 latent map (16 numbers) to a
128 × 128 two-phase image, and a discriminator of five convolutions back down to one logit. Pure modules; the
adversarial training is :class:`lightning_modules.gan.AdversarialTraining`.

Two options against what a first CPU-trained generator showed (near-isotropic blobs with a checkerboard
texture): ``upsampling: resize`` doubles the side by nearest-neighbour resizing and a 3×3 convolution instead
of a stride-2 transposed convolution (whose overlapping kernels print a checkerboard, Odena et al. 2016), and
``spectral_norm`` bounds every discriminator layer's largest singular value at 1 in place of batch
normalisation (Miyato et al. 2018), so the discriminator cannot win by steep, brittle boundaries.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as bounded


class Generator(nn.Module):
    """(n, latent_side²) latent vectors → (n, 1, S, S) images with values in (0, 1), S = latent_side · 2⁵."""

    def __init__(self, latent_side: int = 4, channels: tuple[int, ...] = (256, 128, 64, 32),
                 upsampling: str = "transposed"):
        super().__init__()
        if upsampling not in ("transposed", "resize"):
            raise ValueError(f"upsampling must be 'transposed' or 'resize', got {upsampling!r}")
        self.latent_side = latent_side
        layers, width = [], 1
        for out in channels:  # each doubles the side: 4 → 8 → 16 → 32 → 64
            layers += [self._double(width, out, upsampling, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            width = out
        layers += [self._double(width, 1, upsampling, bias=True), nn.Sigmoid()]  # the fifth: → 128
        self.layers = nn.Sequential(*layers)

    @staticmethod
    def _double(n_in: int, n_out: int, upsampling: str, bias: bool) -> nn.Module:
        if upsampling == "transposed":
            return nn.ConvTranspose2d(n_in, n_out, 4, stride=2, padding=1, bias=bias)
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z.reshape(len(z), 1, self.latent_side, self.latent_side))


class Discriminator(nn.Module):
    """(n, 1, S, S) images → (n, 1) logits of "drawn from the training images"."""

    def __init__(self, size: int = 128, channels: tuple[int, ...] = (32, 64, 128, 256), spectral_norm: bool = False):
        super().__init__()
        wrap = bounded if spectral_norm else (lambda layer: layer)
        layers, width = [], 1
        for i, out in enumerate(channels):  # each halves the side: 128 → 64 → 32 → 16 → 8
            layers += [wrap(nn.Conv2d(width, out, 4, stride=2, padding=1, bias=i == 0 or spectral_norm))]
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
    """

    def __init__(self, n_features: int = 128, latent_side: int = 4,
                 generator_channels: tuple[int, ...] = (256, 128, 64, 32),
                 discriminator_channels: tuple[int, ...] = (32, 64, 128, 256),
                 upsampling: Literal["transposed", "resize"] = "transposed", spectral_norm: bool = False):
        super().__init__()
        side = latent_side * 2 ** (len(generator_channels) + 1)
        if side != n_features:
            raise ValueError(f"a {latent_side}×{latent_side} latent map through {len(generator_channels) + 1} "
                             f"doubling layers gives {side}-pixel images, not {n_features}")
        self.latent_dim = latent_side**2
        self.generator = Generator(latent_side, tuple(generator_channels), upsampling)
        self.discriminator = Discriminator(n_features, tuple(discriminator_channels), spectral_norm)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images for latent vectors."""
        return self.generator(z)
