"""Statistical descriptors of periodic two-phase images (2-D or 3-D), as reconstruction and design compare them.

Images are batched tensors (n, N1, N2[, N3]) holding the phase-1 indicator (0/1, or values in [0, 1] where the
descriptor is used as a differentiable loss); every descriptor is periodic, in torch, batched and
differentiable.

- :func:`two_point`: the two-point correlation S2(r) = P(x and x + r both in phase 1), the whole periodic map
  by FFT (Wiener–Khinchin), zero offset at the centre; :func:`radial_two_point` its average over offsets of
  equal length |r| (rounded to whole voxels), S2(0) = volume fraction;
- :func:`lineal_path`: L(r) = P(a straight segment of r + 1 voxels along an axis lies wholly in phase 1),
  averaged over the axes (Torquato's lineal-path function on the voxel grid), L(0) = volume fraction.
"""

from __future__ import annotations

import torch


def _dims(images: torch.Tensor) -> tuple[int, ...]:
    if images.dim() not in (3, 4):
        raise ValueError(f"images must be (n, N1, N2) or (n, N1, N2, N3), got shape {tuple(images.shape)}")
    return tuple(range(1, images.dim()))


def two_point(images: torch.Tensor) -> torch.Tensor:
    """Periodic S2 over every offset, (n, N1, N2[, N3]), the zero offset at index N_i // 2."""
    dims = _dims(images)
    x = images.double() if not images.is_floating_point() else images
    hat = torch.fft.rfftn(x, dim=dims)
    corr = torch.fft.irfftn(hat * hat.conj(), s=x.shape[1:], dim=dims) / x[0].numel()
    return torch.fft.fftshift(corr, dim=dims)


def radial_two_point(images: torch.Tensor, max_r: int) -> torch.Tensor:
    """S2 averaged over offsets of each rounded length 0 … ``max_r`` voxels, (n, max_r + 1)."""
    corr = two_point(images)
    grids = torch.meshgrid(*(torch.arange(s, device=images.device) - s // 2 for s in images.shape[1:]), indexing="ij")
    radius = torch.sqrt(sum(g.double() ** 2 for g in grids)).round().long().flatten()
    keep = radius <= max_r
    flat = corr.flatten(1)[:, keep]
    sums = torch.zeros(len(corr), max_r + 1, dtype=corr.dtype, device=corr.device).index_add_(1, radius[keep], flat)
    counts = torch.bincount(radius[keep], minlength=max_r + 1).to(corr.dtype)
    return sums / counts


def lineal_path(images: torch.Tensor, max_r: int) -> torch.Tensor:
    """L(0 … ``max_r``) of phase 1, averaged over the axes, (n, max_r + 1); periodic."""
    dims = _dims(images)
    x = images.double() if not images.is_floating_point() else images
    out = []
    for axis in dims:
        run = x
        values = [run.mean(dim=dims)]
        for r in range(1, max_r + 1):  # a segment of r + 1 voxels: the product of r + 1 shifted copies
            run = run * x.roll(-r, dims=axis)
            values.append(run.mean(dim=dims))
        out.append(torch.stack(values, dim=1))
    return torch.stack(out).mean(0)
