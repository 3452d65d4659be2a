"""Periodic two-phase voxel microstructures (microscale volume elements, MVEs).

The generator follows the recipe of PyMKS's ``generate_multiphase`` (Brough,
Wheeler, Kalidindi, Integr. Mater. Manuf. Innov. 6, 36 (2017)) used for the
datasets of Yang et al. (Comput. Mater. Sci. 151, 278 (2018); Acta Mater. 166,
335 (2019)): white noise, smoothed by a Gaussian filter whose width per axis is
the correlation length ("grain size"), thresholded at the quantile that gives
the target volume fraction. Here the filter is applied in Fourier space, so the
element is exactly periodic, and the threshold is the element's own quantile,
so the volume fraction is met to one voxel.

Voxel value 1 is phase 1 (the hard phase in :mod:`materials.elasticity`),
0 is phase 0. Everything is batched over elements and runs on CPU or GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def validate_voxels(micro, name: str = "microstructure"):
    """``micro`` (torch or numpy) as (n, N1, N2, N3) of 0/1, unconverted; a clear error naming the first bad voxel."""
    if micro.ndim == 3:
        micro = micro[None]
    if micro.ndim != 4:
        raise ValueError(f"{name}: expected (n, N1, N2, N3) voxels, got shape {tuple(micro.shape)}")
    bad = torch.as_tensor((micro != 0) & (micro != 1))
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name}: voxels must be 0 or 1 (two phases); element {index[0]} voxel {index[1:]} "
                         f"is {micro[index].item()!r}")
    return micro


def check_microstructure(micro: torch.Tensor, name: str = "microstructure") -> torch.Tensor:
    """``micro`` as a float tensor of 0/1 of shape (n, N1, N2, N3); a clear error otherwise."""
    micro = validate_voxels(torch.as_tensor(micro), name)
    return micro.to(torch.get_default_dtype() if not micro.is_floating_point() else micro.dtype)


def gaussian_filter_periodic(noise: torch.Tensor, correlation_lengths: torch.Tensor) -> torch.Tensor:
    """Periodic Gaussian filter of (n, N1, N2, N3) fields, one (σ1, σ2, σ3) in voxels per element."""
    shape, device = tuple(noise.shape[1:]), noise.device
    sigma = correlation_lengths.to(device=device, dtype=torch.float64)
    k = [torch.fft.fftfreq(shape[0], device=device), torch.fft.fftfreq(shape[1], device=device),
         torch.fft.rfftfreq(shape[2], device=device)]
    # the Fourier transform of a unit-area Gaussian of width σ is exp(-2 π² σ² k²)
    exponent = sum((2 * torch.pi**2) * sigma[:, i, None, None, None] ** 2
                   * k[i].double().reshape([-1 if j == i else 1 for j in range(3)]) ** 2 for i in range(3))
    return torch.fft.irfftn(torch.fft.rfftn(noise.double(), dim=(1, 2, 3)) * torch.exp(-exponent), s=shape,
                            dim=(1, 2, 3))


def threshold_to_fraction(field: torch.Tensor, volume_fractions: torch.Tensor) -> torch.Tensor:
    """1 where the field is among the largest ``f`` of each element's voxels (ties broken by order)."""
    n = field.shape[0]
    flat = field.reshape(n, -1)
    count = torch.round(volume_fractions.to(flat.device).double() * flat.shape[1]).long()
    ranks = flat.argsort(dim=1, descending=True).argsort(dim=1)
    return (ranks < count[:, None]).reshape(field.shape).to(torch.uint8)


@dataclass(frozen=True)
class MicrostructureSampler:
    """How the elements of a dataset are drawn.

    Args:
        size: voxels per edge (51 for homogenization, 21 for localization).
        volume_fraction: range of the phase-1 volume fraction, drawn uniformly per element.
        correlation_length: range of the Gaussian filter width in voxels, drawn uniformly
            (per axis when ``anisotropic``, else one value for all three axes); the other morphologies scale
            their sizes from it (:mod:`materials.morphologies`).
        anisotropic: draw an independent correlation length per axis (the ``gaussian-anisotropic`` family).
        morphologies: the families to draw from, one chosen uniformly per element (default: the Gaussian
            family, isotropic or per ``anisotropic``); the draw records each element's ``morphology`` (an index
            into this tuple).
    """

    size: int = 51
    volume_fraction: tuple[float, float] = (0.1, 0.9)
    correlation_length: tuple[float, float] = (1.0, 5.0)
    anisotropic: bool = False
    morphologies: tuple[str, ...] | None = None

    def __post_init__(self):
        from materials.morphologies import MORPHOLOGIES

        low, high = self.volume_fraction
        if not (0 < low <= high < 1):
            raise ValueError(f"volume_fraction must lie inside (0, 1), got {self.volume_fraction}")
        if not (0 < self.correlation_length[0] <= self.correlation_length[1]):
            raise ValueError(f"correlation_length must be a positive range, got {self.correlation_length}")
        if self.size < 3:
            raise ValueError(f"size must be at least 3 voxels, got {self.size}")
        unknown = [m for m in self.families if m not in MORPHOLOGIES]
        if unknown or not self.families:
            raise ValueError(f"morphologies {list(self.families)}: use one or more of {', '.join(MORPHOLOGIES)}")

    @property
    def families(self) -> tuple[str, ...]:
        if self.morphologies is not None:
            return tuple(self.morphologies)
        return ("gaussian-anisotropic",) if self.anisotropic else ("gaussian",)

    def draw(self, seeds, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """One element per seed (so any subset can be regenerated alone): uint8 voxels and drawn parameters
        (``volume_fraction``, ``correlation_length``: the family's length per axis, ``morphology``)."""
        if self.families in (("gaussian",), ("gaussian-anisotropic",)):
            return self._draw_gaussian(seeds, device, anisotropic=self.families == ("gaussian-anisotropic",))
        from materials.morphologies import MORPHOLOGIES

        fractions, lengths, fields, chosen = [], [], [], []
        low, high = self.volume_fraction
        for seed in seeds:
            g = torch.Generator().manual_seed(int(seed))
            index = int(torch.randint(len(self.families), (1,), generator=g)) if len(self.families) > 1 else 0
            fractions.append(low + (high - low) * torch.rand(1, generator=g, dtype=torch.float64))
            field, length = MORPHOLOGIES[self.families[index]](g, self.size, *self.correlation_length,
                                                               float(fractions[-1]))
            fields.append(field)
            lengths.append(length)
            chosen.append(index)
        micro = threshold_to_fraction(torch.stack(fields).to(device), torch.cat(fractions))
        return {"micro": micro.cpu(), "volume_fraction": micro.double().mean(dim=(1, 2, 3)).cpu(),
                "correlation_length": torch.stack(lengths), "morphology": torch.tensor(chosen, dtype=torch.uint8)}

    def _draw_gaussian(self, seeds, device, anisotropic: bool) -> dict[str, torch.Tensor]:
        """The Gaussian family alone, all elements filtered in one batch (the datasets made before the other
        families existed, element for element)."""
        fractions, lengths, noise = [], [], []
        low, high = self.volume_fraction
        lo, hi = self.correlation_length
        for seed in seeds:
            g = torch.Generator().manual_seed(int(seed))
            fractions.append(low + (high - low) * torch.rand(1, generator=g, dtype=torch.float64))
            axes = 3 if anisotropic else 1
            lengths.append((lo + (hi - lo) * torch.rand(axes, generator=g, dtype=torch.float64)).expand(3))
            noise.append(torch.randn((self.size,) * 3, generator=g, dtype=torch.float64))
        lengths = torch.stack(lengths)
        field = gaussian_filter_periodic(torch.stack(noise).to(device), lengths)
        micro = threshold_to_fraction(field, torch.cat(fractions))
        return {"micro": micro.cpu(), "volume_fraction": micro.double().mean(dim=(1, 2, 3)).cpu(),
                "correlation_length": lengths, "morphology": torch.zeros(len(lengths), dtype=torch.uint8)}


def periodic_neighbourhoods(micro: torch.Tensor, element: torch.Tensor, voxel: torch.Tensor, k: int) -> torch.Tensor:
    """The k×k×k periodic neighbourhoods centred on flat ``voxel`` indices of ``element``s: (B, k, k, k).

    ``micro`` is (n, N1, N2, N3); one advanced-indexing gather for the whole batch (no loop per voxel).
    Axis 1 of the result runs along x1, so it can be read as k channels of k×k images.
    """
    if k % 2 != 1:
        raise ValueError(f"neighbourhood size must be odd (a focal voxel in the centre), got {k}")
    n1, n2, n3 = micro.shape[1:]
    x, rest = voxel // (n2 * n3), voxel % (n2 * n3)
    y, z = rest // n3, rest % n3
    offsets = torch.arange(k, device=micro.device) - k // 2
    ix = (x[:, None] + offsets) % n1
    iy = (y[:, None] + offsets) % n2
    iz = (z[:, None] + offsets) % n3
    return micro[element[:, None, None, None], ix[:, :, None, None], iy[:, None, :, None], iz[:, None, None, :]]


def gaussian_random_images(seeds, size: int = 128, volume_fraction: tuple[float, float] = (0.3, 0.7),
                           correlation_length: tuple[float, float] = (2.0, 8.0)) -> dict[str, torch.Tensor]:
    """Periodic two-phase images (n, size, size), uint8, one per seed: white noise filtered by a Gaussian of
    independent widths along the two axes (drawn uniformly from ``correlation_length``, pixels), thresholded
    at a volume fraction drawn uniformly from ``volume_fraction`` (the GAN's training images, Yang et al. 2018)."""
    fractions, lengths, noise = [], [], []
    (low, high), (lo, hi) = volume_fraction, correlation_length
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        fractions.append(low + (high - low) * torch.rand(1, generator=g, dtype=torch.float64))
        lengths.append(torch.cat([lo + (hi - lo) * torch.rand(2, generator=g, dtype=torch.float64),
                                  torch.zeros(1, dtype=torch.float64)]))  # a columnar field: no third axis
        noise.append(torch.randn(size, size, 1, generator=g, dtype=torch.float64))
    field = gaussian_filter_periodic(torch.stack(noise), torch.stack(lengths))
    images = threshold_to_fraction(field, torch.cat(fractions))[..., 0]
    return {"images": images, "volume_fraction": images.double().mean(dim=(1, 2)),
            "correlation_length": torch.stack(lengths)[:, :2]}
