"""First-order MKS localization recovers an exact first-order convolution."""

from __future__ import annotations

import numpy as np
import pytest

from materials.microstructure import MicrostructureSampler
from materials.mks import MKSLocalization


def test_mks_recovers_a_known_influence_kernel():
    rng = np.random.default_rng(1)
    micro = MicrostructureSampler(size=9, volume_fraction=(0.2, 0.8), correlation_length=(0.7, 2.0)).draw(
        range(40))["micro"].numpy()
    kernel = rng.normal(size=(9, 9, 9)) * np.exp(-np.sum(np.indices((9, 9, 9)) ** 2, axis=0) / 4.0)
    m_hat = np.fft.rfftn(micro.astype(float), axes=(1, 2, 3))
    response = 1.0 + np.fft.irfftn(m_hat * np.fft.rfftn(kernel), s=(9, 9, 9), axes=(1, 2, 3))
    model = MKSLocalization().fit(micro[:30], response[:30])
    predicted = model.predict(micro[30:])
    assert np.abs(predicted - response[30:]).max() < 1e-8 * np.abs(response).max()
    expected = np.fft.fftshift(kernel - kernel.mean())  # the k = 0 part goes to the mean, not the kernel
    assert np.allclose(model.influence_kernel, expected, atol=1e-8)


def test_grid_and_values_are_checked():
    micro = np.zeros((3, 5, 5, 5), dtype=np.uint8)
    micro[:, :2] = 1
    model = MKSLocalization().fit(micro, np.ones((3, 5, 5, 5)))
    with pytest.raises(ValueError, match=r"fitted on \(5, 5, 5\) grids, got \(7, 7, 7\)"):
        model.predict(np.zeros((1, 7, 7, 7)))
    bad = micro.copy()
    bad[0, 0, 0, 0] = 2
    with pytest.raises(ValueError, match=r"voxel \(0, 0, 0\) is 2"):
        model.predict(bad)
    with pytest.raises(ValueError, match="differs"):
        MKSLocalization().fit(micro, np.ones((3, 5, 5, 4)))
