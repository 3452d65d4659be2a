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


@pytest.mark.parametrize("family", ["particles", "fibres", "laminate", "gaussian-anisotropic"])
def test_each_morphology_meets_its_volume_fraction_and_has_no_seam(family):
    """The fraction to one voxel; periodic: neighbours across the element's faces differ no more often than
    neighbours inside it (a generator that were not periodic would leave a seam)."""
    sampler = MicrostructureSampler(size=24, volume_fraction=(0.2, 0.8), morphologies=(family,))
    drawn = sampler.draw(range(12))
    targets = torch.tensor([0.2 + 0.6 * torch.rand(1, generator=_after_family_choice(i, 1),
                                                   dtype=torch.float64).item() for i in range(12)])
    assert torch.all((drawn["volume_fraction"] - targets).abs() <= 0.5 / 24**3 + 1e-12)
    micro = drawn["micro"].double()
    for axis in (1, 2, 3):
        seam = (micro.select(axis, 0) != micro.select(axis, -1)).double().mean()
        inside = (micro.narrow(axis, 0, 23) != micro.narrow(axis, 1, 23)).double().mean()
        assert seam <= 1.5 * inside + 0.02, (family, axis, float(seam), float(inside))
    assert torch.equal(drawn["micro"][5], sampler.draw([5])["micro"][0])  # any element regenerates alone
    assert drawn["correlation_length"].shape == (12, 3) and torch.all(drawn["correlation_length"] > 0)


def _after_family_choice(seed: int, families: int) -> torch.Generator:
    """An element's generator as the sampler uses it after drawing the family (only with several families)."""
    g = torch.Generator().manual_seed(seed)
    if families > 1:
        torch.randint(families, (1,), generator=g)
    return g


def test_a_mixture_draws_every_family_and_records_which():
    families = ("gaussian", "particles", "fibres", "laminate")
    drawn = MicrostructureSampler(size=16, morphologies=families).draw(range(40))
    assert set(drawn["morphology"].tolist()) == {0, 1, 2, 3}
    fibres = drawn["micro"][drawn["morphology"] == 2]  # each fibre element runs along one axis
    assert all(max((m == m.roll(1, dims=a)).double().mean() for a in range(3)) > 0.95 for m in fibres)
    default = MicrostructureSampler(size=16).draw(range(3))  # the Gaussian family alone: as before the others
    assert torch.equal(default["micro"], MicrostructureSampler(size=16, morphologies=("gaussian",)).draw(range(3))["micro"])
    assert torch.equal(default["morphology"], torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="morphologies \[.spheres.\]: use one or more of gaussian"):
        MicrostructureSampler(morphologies=("spheres",))


def test_a_dataset_of_several_morphologies_records_them(tmp_path):
    import h5py

    from datamodules.simulate.mve import MVEDatasetSpec, generate

    plain = MVEDatasetSpec(n_elements=4, size=9, contrast=5.0)
    assert "morphologies" not in plain.content()  # the caches made before the families keep their names
    assert "precision" not in plain.content()  # (and before float32 solving)
    single = MVEDatasetSpec(n_elements=4, size=9, contrast=5.0, precision="float32")
    assert single.content()["precision"] == "float32" and single.cache_name() != plain.cache_name()
    with pytest.raises(ValueError, match="precision must be float64 or float32"):
        MVEDatasetSpec(precision="float16")
    spec = MVEDatasetSpec(n_elements=6, size=9, contrast=5.0, morphologies=("particles", "laminate"))
    assert spec.content()["morphologies"] == ["particles", "laminate"] and spec.cache_name() != plain.cache_name()
    with h5py.File(generate(spec, tmp_path, progress=False), "r") as f:
        recorded = f["morphology"][:]
        assert np.array_equal(recorded, spec.sampler().draw(range(6))["morphology"].numpy())
        assert set(recorded) <= {0, 1} and np.all(f["c11"][:] > 0)


@pytest.mark.parametrize("family", ["particles", "fibres"])
def test_inclusions_are_the_minority_phase_and_the_threshold_never_cuts_the_flat_matrix(family):
    """Above one half the inclusions are phase 0; either way every voxel of the majority phase is outside the
    cores, so no run of matrix voxels is split by voxel order."""
    from materials.morphologies import MORPHOLOGIES

    for fraction in (0.15, 0.5, 0.85):
        field, _ = MORPHOLOGIES[family](torch.Generator().manual_seed(3), 20, 1.0, 3.0, fraction)
        flat = field.flatten().sort(descending=True).values
        k = round(fraction * flat.numel())
        assert flat[k - 1] > flat[k], (family, fraction)  # the cut falls between distinct values: no tie
