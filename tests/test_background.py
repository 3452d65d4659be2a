"""2D background filters (diss. 7.3.4), their PyTorch twins, slope filters (Eq. 7.1-7.4) and 1D SNIP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from materials.xrd_background import (background, background_removed, mean_filter_background, mean_filter_torch,
                                      minimum_filter_background, minimum_filter_torch, slope_filters, snip_background)


def _windows(frame: np.ndarray, f: int) -> np.ndarray:
    """Every f × f window of a frame extended by its edge values, placed as scipy places an f-wide window
    (from i - f//2 to i + (f-1)//2)."""
    padded = np.pad(frame, ((f // 2, (f - 1) // 2), (f // 2, (f - 1) // 2)), mode="edge")
    return sliding_window_view(padded, (f, f))


@pytest.mark.parametrize("f", [1, 2, 5, 8, 13])
def test_minimum_and_mean_filters_equal_a_direct_window_reference(f):
    frames = np.random.default_rng(f).poisson(200.0, (3, 23, 31)).astype(np.float32)
    mf = minimum_filter_background(frames, f)
    cs = mean_filter_background(mf, f)
    for k in range(3):
        np.testing.assert_array_equal(mf[k], _windows(frames[k], f).min((-2, -1)))
        np.testing.assert_allclose(cs[k], _windows(mf[k].astype(np.float64), f).mean((-2, -1)), rtol=1e-5)
    assert (frames - mf >= 0).all()  # the minimum never exceeds the frame


@pytest.mark.parametrize("f", [1, 2, 3, 6, 25, 64])
def test_torch_filters_equal_scipys_batched_and_for_integer_counts(f):
    frames = np.random.default_rng(0).poisson(1000.0, (2, 2, 64, 80)).astype(np.uint32)
    mf_scipy, cs_scipy = background(frames.astype(np.float32), f, "scipy")
    mf_torch = minimum_filter_torch(torch.from_numpy(frames.astype(np.int64)), f)
    np.testing.assert_array_equal(mf_torch.numpy(), mf_scipy)
    np.testing.assert_allclose(mean_filter_torch(torch.from_numpy(mf_scipy), f).numpy(), cs_scipy, rtol=1e-6)
    mf_t, cs_t = background(torch.from_numpy(frames.astype(np.float32)), f, "torch")
    np.testing.assert_array_equal(mf_t, mf_scipy)
    np.testing.assert_allclose(cs_t, cs_scipy, rtol=1e-6)


def test_network_inputs_and_bad_frames():
    frames = np.random.default_rng(1).poisson(500.0, (2, 1, 40, 40)).astype(np.float32)
    mf, cs = background(frames, 9)
    np.testing.assert_array_equal(background_removed(frames, mf, cs, "I"), frames)
    np.testing.assert_array_equal(background_removed(frames, mf, cs, "I-MF"), frames - mf)
    np.testing.assert_array_equal(background_removed(frames, mf, cs, "I-CS"), frames - cs)
    with pytest.raises(ValueError, match="unknown input"):
        background_removed(frames, mf, cs, "I-XX")
    with pytest.raises(ValueError, match="real array"):
        minimum_filter_background(frames.astype(np.complex64), 3)
    with pytest.raises(ValueError, match="filter size"):
        minimum_filter_background(frames, 41)
    with pytest.raises(ValueError, match="real tensor"):
        minimum_filter_torch(torch.zeros(4, 4, dtype=torch.bool), 2)


def test_slope_filters_are_equations_7_1_to_7_4_for_f_50():
    f = 50
    filters = slope_filters(f)
    assert filters.shape == (4, f, f)
    for i in range(f):
        for j in range(f):
            assert filters[0, i, j] == (-1 if i < j else 1)  # F1, Eq. 7.1
            assert filters[1, i, j] == (-1 if i + j > f else 1)  # F2, Eq. 7.2
            assert filters[2, i, j] == (-1 if i < f / 2 else 1)  # VF, Eq. 7.3
            assert filters[3, i, j] == (-1 if j < f / 2 else 1)  # HF, Eq. 7.4
    # symmetric halves of opposite sign: VF and HF cancel a flat background exactly
    assert filters[2].sum() == 0 and filters[3].sum() == 0
    np.testing.assert_array_equal(filters[3], filters[2].T)


def test_snip_recovers_a_smooth_background_under_narrow_peaks():
    x = np.linspace(10, 60, 2501)
    base = 200 + 300 * np.exp(-(x - 10) / 15) + 80 * np.exp(-((x - 22) / 6) ** 2)
    peaks = sum(h * np.exp(-4 * np.log(2) * ((x - c) / 0.3) ** 2) for c, h in [(25, 900), (33, 400), (41, 1500)])
    estimate = snip_background(np.stack([base + peaks, base]), iterations=40)
    away = np.ones_like(x, bool)
    for c in (25, 33, 41):
        away &= np.abs(x - c) > 1.0
    np.testing.assert_allclose(estimate[0][away][50:-50], base[away][50:-50], rtol=0.05)  # SNIP trims a hump top slightly
    np.testing.assert_allclose(estimate[0][away], estimate[1][away], rtol=0.01)  # the peaks do not lift it
    net = (base + peaks - estimate[0])
    step = x[1] - x[0]
    for c, h in [(25, 900), (41, 1500)]:
        window = np.abs(x - c) < 1.0
        assert net[window].sum() * step == pytest.approx(h * 0.3 * np.sqrt(np.pi / (4 * np.log(2))), rel=0.08)
