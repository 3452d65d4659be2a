"""Statistically equivalent reconstructions of a periodic two-phase image (2-D or 3-D).

From one given image, three ways to make others like it, each ending with exactly the original's volume
fraction (the pixels of the continuous result ranked, the top fraction set to phase 1):

- ``descriptor``: optimise a continuous image (sigmoid of free logits, Adam) until its two-point correlation
  (the whole periodic map) and lineal-path function match the original's (:mod:`materials.descriptors`);
- ``gram``: Li et al.'s route, with the texture statistics of a CNN: the Gram matrices of the activations of a
  fixed, randomly initialised multi-scale CNN (random convolutional features give usable texture statistics,
  Ustyuzhaninov et al. 2017; no pretrained weights are downloaded) matched by the same optimiser;
- ``grf``: the baseline, a Gaussian random field with the original's power spectrum (its autocorrelation)
  and random phases, thresholded.

:func:`descriptor_errors` scores a reconstruction against the original: the mean absolute differences of
their radial two-point and lineal-path functions.
"""

from __future__ import annotations

import torch
from torch import nn

from materials.descriptors import lineal_path, radial_two_point, two_point
from materials.microstructure import threshold_to_fraction


def exact_fraction(field: torch.Tensor, fraction: float) -> torch.Tensor:
    """Phase 1 where ``field`` is among its largest ``fraction`` of pixels: 0/1 float64 (the sampler's threshold,
    :func:`materials.microstructure.threshold_to_fraction`, for one image of any dimension)."""
    return threshold_to_fraction(field[None], torch.tensor([fraction]))[0].double()


def grf(target: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A Gaussian random field with the target's power spectrum and random phases, at its volume fraction."""
    t = target.double()
    dims = tuple(range(t.dim()))
    amplitude = torch.fft.fftn(t - t.mean(), dim=dims).abs()
    noise = torch.randn(t.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    phases = torch.fft.fftn(noise, dim=dims)
    field = torch.fft.ifftn(amplitude * phases / phases.abs().clamp_min(1e-12), dim=dims).real
    return exact_fraction(field, float(t.mean()))


class RandomTextureNet(nn.Module):
    """Fixed random convolutions at growing dilations (multi-scale), ReLU between: texture features."""

    def __init__(self, dims: int, channels: int = 32, layers: int = 4, seed: int = 0):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.layers = nn.ModuleList(conv(1 if i == 0 else channels, channels, 3, dilation=2**i,
                                             padding=2**i, padding_mode="circular", dtype=torch.float64)
                                        for i in range(layers))
        for p in self.parameters():
            p.requires_grad_(False)

    def grams(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The Gram matrix of each layer's activations (channels × channels, normalised by the pixel count)."""
        h, out = x[None, None], []
        for layer in self.layers:
            h = torch.relu(layer(h))
            flat = h.flatten(2)[0]
            out.append(flat @ flat.T / flat.shape[1])
        return out


def _optimise(target: torch.Tensor, loss_of, steps: int, lr: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = (0.1 * torch.randn(target.shape, generator=g, dtype=torch.float64)).requires_grad_(True)
    optimiser = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        loss_of(torch.sigmoid(logits)).backward()
        optimiser.step()
    return exact_fraction(logits.detach(), float(target.double().mean()))


def descriptor_reconstruction(target: torch.Tensor, steps: int = 300, lr: float = 0.3, max_r: int | None = None,
                              seed: int = 0) -> torch.Tensor:
    t = target.double()
    max_r = max_r or min(t.shape) // 2
    goal_s2, goal_l = two_point(t[None])[0], lineal_path(t[None], max_r)[0]

    def loss(x):
        s2_error = (two_point(x[None])[0] - goal_s2).square().mean()
        return s2_error + (lineal_path(x[None], max_r)[0] - goal_l).square().mean()

    return _optimise(t, loss, steps, lr, seed)


def gram_reconstruction(target: torch.Tensor, steps: int = 300, lr: float = 0.3, seed: int = 0) -> torch.Tensor:
    t = target.double()
    net = RandomTextureNet(t.dim(), seed=seed)
    goal = [gm.detach() for gm in net.grams(t)]

    def loss(x):
        return sum((gm - g0).square().sum() / g0.square().sum().clamp_min(1e-12) for gm, g0 in zip(net.grams(x), goal))

    return _optimise(t, loss, steps, lr, seed)


METHODS = {"descriptor": descriptor_reconstruction, "gram": gram_reconstruction,
           "grf": lambda target, seed=0, **_: grf(target, seed)}


def descriptor_errors(original: torch.Tensor, other: torch.Tensor, max_r: int | None = None) -> dict[str, float]:
    """Mean absolute differences of the radial two-point and the lineal-path functions, and of the fraction."""
    a, b = original.double()[None], other.double()[None]
    max_r = max_r or min(original.shape) // 2
    return {"two_point_error": float((radial_two_point(a, max_r) - radial_two_point(b, max_r)).abs().mean()),
            "lineal_path_error": float((lineal_path(a, max_r) - lineal_path(b, max_r)).abs().mean()),
            "volume_fraction_error": float((a.mean() - b.mean()).abs())}

