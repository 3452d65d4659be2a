"""Two-point correlation and lineal-path functions against a direct count on small periodic images."""

import itertools

import numpy as np
import pytest
import torch

from materials.descriptors import lineal_path, radial_two_point, two_point


@pytest.mark.parametrize("shape", [(7, 6), (5, 6, 4)])
def test_descriptors_equal_a_direct_count(shape):
    rng = np.random.default_rng(1)
    images = torch.from_numpy((rng.random((2, *shape)) < 0.45).astype(np.float64))
    corr = two_point(images)
    centre = tuple(s // 2 for s in shape)
    for offset in itertools.product(*(range(-(s // 2), s - s // 2) for s in shape)):
        direct = (images * images.roll(tuple(-o for o in offset), dims=tuple(range(1, len(shape) + 1)))).mean(
            dim=tuple(range(1, len(shape) + 1)))
        index = tuple(c + o for c, o in zip(centre, offset))
        assert torch.allclose(corr[(slice(None), *index)], direct, atol=1e-12), offset
    assert torch.allclose(radial_two_point(images, 2)[:, 0], images.flatten(1).mean(1))
    # lineal path by walking every segment of every voxel along every axis
    a = images.numpy().astype(bool)
    expected = np.zeros((2, 4))
    for r in range(4):
        for axis in range(1, len(shape) + 1):
            inside = np.ones_like(a)
            for k in range(r + 1):
                inside &= np.roll(a, -k, axis=axis)
            expected[:, r] += inside.reshape(2, -1).mean(1) / len(shape)
    assert np.allclose(lineal_path(images, 3).numpy(), expected)


def test_descriptors_tell_morphologies_apart_and_carry_gradients():
    from materials.microstructure import MicrostructureSampler

    draw = {m: MicrostructureSampler(size=20, volume_fraction=(0.3, 0.3), morphologies=(m,)).draw(range(3))["micro"]
            for m in ("gaussian", "laminate")}
    paths = {m: lineal_path(v.double(), 8).mean(0) for m, v in draw.items()}
    assert torch.allclose(paths["gaussian"][0], paths["laminate"][0], atol=2e-3)  # the same volume fraction
    assert not torch.allclose(paths["gaussian"], paths["laminate"], atol=0.02)
    soft = torch.rand(1, 8, 8, dtype=torch.float64, requires_grad=True)
    (radial_two_point(soft, 3).sum() + lineal_path(soft, 3).sum()).backward()
    assert soft.grad is not None and torch.isfinite(soft.grad).all() and soft.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\(n, N1, N2\)"):
        two_point(torch.zeros(4))
