"""Families of periodic two-phase morphologies beyond Gaussian-filtered noise.

Each family draws a continuous periodic field on an N³ grid from an element's own random generator; the
sampler (:class:`materials.microstructure.MicrostructureSampler`) thresholds it at the element's volume
fraction like the Gaussian family, so every family meets its fraction to one voxel. The ``length`` each
family records is its characteristic size in voxels, per axis:

- ``gaussian`` / ``gaussian-anisotropic``: white noise under a periodic Gaussian filter, one width for all
  axes or one per axis (PyMKS's recipe; Yang et al.'s datasets);
- ``particles``: overlapping spherical inclusions of the minority phase at uniform random centres (the field
  is the largest 1 − d²/r² over the particles, d the periodic distance), radius = length;
- ``fibres``: parallel cylinders of the minority phase along one random axis at random positions in the cross-section, with
  slightly rough surfaces; radius = length across, the edge of the element along the fibres;
- ``laminate``: layers normal to a random low-index lattice direction (so the element stays periodic), with
  Gaussian-filtered noise added to their interfaces; length = the layers' period along each axis (the edge of
  the element along an axis they do not vary on).

Two-point statistics capture the Gaussian family almost by construction; the others vary shape and
connectivity at one volume fraction, which is what makes a learned model necessary.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def _grid(size: int) -> torch.Tensor:
    return torch.arange(size, dtype=torch.float64)


def _uniform(g: torch.Generator, low: float, high: float, n: int = 1) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)


def _periodic_offsets(size: int, centres: torch.Tensor) -> torch.Tensor:
    """(m, size): the periodic distance from every grid coordinate to each of m centre coordinates."""
    d = (_grid(size)[None, :] - centres[:, None]).abs()
    return torch.minimum(d, size - d)


def gaussian_field(g, size: int, lengths: torch.Tensor) -> torch.Tensor:
    from materials.microstructure import gaussian_filter_periodic

    noise = torch.randn((size,) * 3, generator=g, dtype=torch.float64)
    return gaussian_filter_periodic(noise[None], lengths[None])[0]


def gaussian(g, size: int, low: float, high: float, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = _uniform(g, low, high).expand(3)
    return gaussian_field(g, size, lengths), lengths


def gaussian_anisotropic(g, size: int, low: float, high: float, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = _uniform(g, low, high, 3)
    return gaussian_field(g, size, lengths), lengths


def _inclusions(field: torch.Tensor, fraction: float) -> torch.Tensor:
    """The inclusions' field with the inclusions as the minority phase: phase 1 when ``fraction`` ≤ 0.5, else
    the matrix (the field negated). Inclusions cover ~3/4 of the element before the threshold (density 1.4), so
    the threshold cuts through their cores and never through the flat field outside them."""
    return field if fraction <= 0.5 else -field


def particles(g, size: int, low: float, high: float, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    radius = float(_uniform(g, 1.5 * low, 2.0 * high))  # radii of a few voxels: inclusions, not noise
    count = max(1, round(1.4 * size**3 / (4 / 3 * math.pi * radius**3)))
    centres = torch.rand(count, 3, generator=g, dtype=torch.float64) * size
    # each particle touches only the voxels of its bounding box: O(size³) work whatever the radius
    reach = torch.arange(-math.ceil(radius), math.ceil(radius) + 1, dtype=torch.float64)
    box = torch.stack(torch.meshgrid(reach, reach, reach, indexing="ij")).reshape(3, -1)  # (3, K)
    voxels = centres.floor()[:, :, None] + box[None]  # (count, 3, K)
    d2 = ((voxels - centres[:, :, None]) ** 2).sum(1)
    index = voxels.long().remainder(size)
    flat = (index[:, 0] * size + index[:, 1]) * size + index[:, 2]
    field = torch.full((size**3,), -1.0, dtype=torch.float64)  # outside every particle
    field.scatter_reduce_(0, flat.reshape(-1), (1 - d2 / radius**2).reshape(-1), reduce="amax")
    return _inclusions(field.reshape((size,) * 3), fraction), torch.full((3,), radius, dtype=torch.float64)


def fibres(g, size: int, low: float, high: float, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    radius = float(_uniform(g, 1.5 * low, 2.0 * high))
    axis = int(torch.randint(3, (1,), generator=g))
    count = max(1, round(1.4 * size**2 / (math.pi * radius**2)))
    centres = torch.rand(count, 2, generator=g, dtype=torch.float64) * size
    da, db = (_periodic_offsets(size, centres[:, i]) ** 2 for i in range(2))
    section = torch.full((size, size), -1.0, dtype=torch.float64)
    for i in range(count):  # (size²) memory whatever the count
        section = torch.maximum(section, 1 - (da[i][:, None] + db[i][None, :]) / radius**2)
    field = section[None].expand(size, size, size).movedim(0, axis).contiguous()
    # rough surfaces: no two voxels tie, so the fraction is met without cutting a fibre part-way
    roughness = gaussian_field(g, size, torch.ones(3, dtype=torch.float64))
    field = field + 0.05 * roughness / roughness.std()
    lengths = torch.full((3,), radius, dtype=torch.float64)
    lengths[axis] = size
    return _inclusions(field, fraction), lengths


def laminate(g, size: int, low: float, high: float, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    # a low-index direction with an integer number of periods along each axis keeps the element periodic
    direction = torch.randint(-1, 2, (3,), generator=g)
    if not direction.any():
        direction[int(torch.randint(3, (1,), generator=g))] = 1
    periods = max(1, round(size / float(_uniform(g, 3 * low, 3 * high))))
    x = torch.stack(torch.meshgrid(_grid(size), _grid(size), _grid(size), indexing="ij"))
    phase = 2 * math.pi * periods * (direction.double()[:, None, None, None] * x).sum(0) / size
    roughness = gaussian_field(g, size, torch.full((3,), max(low, 1.0), dtype=torch.float64))
    field = torch.sin(phase + float(_uniform(g, 0, 2 * math.pi))) + 0.5 * roughness / roughness.std()
    along = direction.abs().double()  # the layers repeat every size / (periods |d_i|) voxels along axis i
    lengths = torch.where(along > 0, size / (periods * along.clamp_min(1)), torch.tensor(float(size)))
    return field, lengths

#: morphology name → f(generator, size, low and high of the sampler's length range, the element's volume
#: fraction) → (field (N³), length (3,))
MORPHOLOGIES: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "gaussian": gaussian, "gaussian-anisotropic": gaussian_anisotropic, "particles": particles, "fibres": fibres,
    "laminate": laminate,
}
