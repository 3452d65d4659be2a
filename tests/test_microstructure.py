"""Two-phase volume elements: volume fractions, periodicity, seeds, anisotropy, neighbourhoods."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from materials.microstructure import (MicrostructureSampler, check_microstructure, gaussian_filter_periodic,
                                      periodic_neighbourhoods)


def test_volume_fractions_hit_the_target_to_one_voxel():
    drawn = MicrostructureSampler(size=21, volume_fraction=(0.1, 0.9)).draw(range(20))
    micro = drawn["micro"]
    assert micro.dtype == torch.uint8 and set(micro.unique().tolist()) <= {0, 1}
    targets = torch.tensor([0.1 + 0.8 * torch.rand(1, generator=torch.Generator().manual_seed(i),
                                                   dtype=torch.float64).item() for i in range(20)])
    assert torch.all((drawn["volume_fraction"] - targets).abs() <= 0.5 / 21**3 + 1e-12)
    assert drawn["volume_fraction"].std() > 0.1  # the range is used


def test_filter_is_periodic_and_elements_are_reproducible_from_their_seed():
    noise = torch.randn(1, 12, 10, 8, dtype=torch.float64)
    lengths = torch.tensor([[2.0, 1.5, 3.0]])
    shifted = gaussian_filter_periodic(noise.roll((5, 3, 7), dims=(1, 2, 3)), lengths)
    assert torch.allclose(shifted, gaussian_filter_periodic(noise, lengths).roll((5, 3, 7), dims=(1, 2, 3)))
    sampler = MicrostructureSampler(size=15)
    batch = sampler.draw([4, 9, 11])["micro"]
    assert torch.equal(batch[1], sampler.draw([9])["micro"][0])  # any element regenerates alone
    assert not torch.equal(batch[0], batch[1])


def test_anisotropic_correlation_lengths_stretch_the_features():
    noise = torch.randn(4, 32, 32, 32, dtype=torch.float64)
    field = gaussian_filter_periodic(noise, torch.tensor([[1.0, 1.0, 5.0]]).expand(4, 3))
    f = field - field.mean()

    def corr(axis):
        return float((f * f.roll(3, dims=axis)).mean() / (f * f).mean())

    assert corr(3) > 0.5 > 0.2 > corr(1) and abs(corr(1) - corr(2)) < 0.1


def test_neighbourhoods_equal_a_direct_periodic_slice():
    rng = np.random.default_rng(0)
    micro = torch.from_numpy(rng.integers(0, 2, size=(3, 9, 7, 8), dtype=np.uint8))
    element = torch.tensor([0, 2, 1, 2])
    voxel = torch.tensor([0, 7 * 8 * 9 - 1, 100, 57])
    got = periodic_neighbourhoods(micro, element, voxel, 5)
    for b, (e, v) in enumerate(zip(element.tolist(), voxel.tolist())):
        x, y, z = np.unravel_index(v, (9, 7, 8))
        centred = np.roll(micro[e].numpy(), (2 - x, 2 - y, 2 - z), axis=(0, 1, 2))[:5, :5, :5]
        assert np.array_equal(got[b].numpy(), centred)
    with pytest.raises(ValueError, match="odd"):
        periodic_neighbourhoods(micro, element, voxel, 4)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"volume_fraction must lie inside \(0, 1\), got \(0.0, 0.5\)"):
        MicrostructureSampler(volume_fraction=(0.0, 0.5))
    with pytest.raises(ValueError, match=r"volume_fraction .* got \(0.5, 1.2\)"):
        MicrostructureSampler(volume_fraction=(0.5, 1.2))
    with pytest.raises(ValueError, match=r"expected \(n, N1, N2, N3\)"):
        check_microstructure(torch.zeros(4, 4))
    bad = torch.zeros(2, 3, 3, 3, dtype=torch.uint8)
    bad[1, 0, 2, 1] = 7
    with pytest.raises(ValueError, match=r"element 1 voxel \(0, 2, 1\) is 7"):
        check_microstructure(bad)
