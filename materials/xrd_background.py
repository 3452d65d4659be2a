"""Background of diffraction frames and patterns (diss. 7.3.3–7.3.4) and PADNet's slope filters.

2D, on raw frames I (Eq. 7.9–7.10):

- ``MF`` = the f × f minimum filter of I (:func:`minimum_filter_background`);
- ``CS`` = the f × f mean filter of MF (:func:`mean_filter_background`). The text of 7.3.4 can be
  read as smoothing I − MF instead; smoothing the minimum-filter background and subtracting it,
  I − CS, is the physically sensible reading (SPEC §6) and the one used here;
- inputs ``I``, ``I-MF`` and ``I-CS`` as in Figure 7.6 (:func:`background_removed`).

Both filters use scipy.ndimage (``minimum_filter`` is separable and runs the van Herk/Gil-Werman
running minimum, ``uniform_filter`` a running sum), so their cost does not grow with f, unlike
the O(h·w·f²) convolution of the paper (7 min per 2048² frame at f = 200). The batched PyTorch
versions (:func:`minimum_filter_torch`, :func:`mean_filter_torch`, for GPUs) use the same two
algorithms (block prefix/suffix minima; cumulative sums in float64) and equal scipy's results
with ``mode="nearest"`` borders and scipy's window placement for even f
(``[i - f//2, i + (f-1)//2]``).

1D: :func:`snip_background`, the SNIP peak-clipping estimate (Ryan et al., Nucl. Instrum.
Methods B 34, 396 (1988); Morháč et al. 1997) used by the 1D baseline in place of MATLAB's
envelope.

:func:`slope_filters`: the four f × f slope filters F1, F2, VF, HF of Eq. 7.1–7.4, with i the row
and j the column index, both counted from 0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

INPUTS = ("I", "I-MF", "I-CS")


def slope_filters(f: int = 50) -> np.ndarray:
    """(4, f, f) filters F1, F2, VF, HF of Eq. 7.1–7.4 (values −1 and +1)."""
    if f < 2:
        raise ValueError(f"slope filters need f >= 2, got {f}")
    i, j = np.meshgrid(np.arange(f), np.arange(f), indexing="ij")
    f1 = np.where(i < j, -1.0, 1.0)
    f2 = np.where(i + j > f, -1.0, 1.0)
    vf = np.where(i < f / 2, -1.0, 1.0)
    hf = np.where(j < f / 2, -1.0, 1.0)
    return np.stack([f1, f2, vf, hf]).astype(np.float32)


def _check_frames(frames: np.ndarray, f: int) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim < 2 or not np.issubdtype(frames.dtype, np.number) or np.iscomplexobj(frames):
        raise ValueError(f"frames must be a real array of at least 2 dimensions (..., H, W), got {frames.dtype} "
                         f"{frames.shape}")
    if f < 1 or f > min(frames.shape[-2:]):
        raise ValueError(f"filter size f={f} must be between 1 and the frame side {min(frames.shape[-2:])}")
    return frames


def minimum_filter_background(frames: np.ndarray, f: int) -> np.ndarray:
    """MF: the f × f minimum filter of each frame (last two axes), scipy.ndimage, border ``nearest``."""
    from scipy.ndimage import minimum_filter

    frames = _check_frames(frames, f)
    size = (1,) * (frames.ndim - 2) + (f, f)
    return minimum_filter(frames.astype(np.float32, copy=False), size=size, mode="nearest")


def mean_filter_background(mf: np.ndarray, f: int) -> np.ndarray:
    """CS: the f × f mean filter of the minimum-filter background (scipy.ndimage.uniform_filter)."""
    from scipy.ndimage import uniform_filter

    mf = _check_frames(mf, f)
    size = (1,) * (mf.ndim - 2) + (f, f)
    return uniform_filter(mf.astype(np.float32, copy=False), size=size, mode="nearest")


def background(frames: np.ndarray | torch.Tensor, f: int, backend: Literal["scipy", "torch"] = "scipy"
               ) -> tuple[np.ndarray, np.ndarray]:
    """(MF, CS) of frames (..., H, W) as float32 numpy arrays; ``torch`` runs on the frames' device."""
    if backend == "scipy":
        mf = minimum_filter_background(np.asarray(frames), f)
        return mf, mean_filter_background(mf, f)
    x = torch.as_tensor(frames)
    mf = minimum_filter_torch(x, f)
    return mf.cpu().numpy(), mean_filter_torch(mf, f).cpu().numpy()


def background_removed(frames: np.ndarray, mf: np.ndarray | None, cs: np.ndarray | None, kind: str) -> np.ndarray:
    """The network input ``I``, ``I-MF`` or ``I-CS`` (Figure 7.6) as float32."""
    if kind not in INPUTS:
        raise ValueError(f"unknown input {kind!r}; use one of {INPUTS}")
    frames = np.asarray(frames, dtype=np.float32)
    if kind == "I":
        return frames
    return frames - (mf if kind == "I-MF" else cs)


# ----- PyTorch (batched, any device) -----

def _pad_nearest(x: torch.Tensor, f: int, dim: int) -> torch.Tensor:
    """Replicate-pad ``dim`` by f//2 before and (f-1)//2 after: scipy's window for size f."""
    before, after = f // 2, (f - 1) // 2
    first = x.narrow(dim, 0, 1).expand(*[before if d == dim % x.ndim else -1 for d in range(x.ndim)])
    last = x.narrow(dim, x.shape[dim] - 1, 1).expand(*[after if d == dim % x.ndim else -1 for d in range(x.ndim)])
    return torch.cat([first, x, last], dim)


def _running_min_1d(x: torch.Tensor, f: int, dim: int) -> torch.Tensor:
    """Minimum over windows of f along ``dim`` (van Herk/Gil-Werman: O(n), independent of f)."""
    x = _pad_nearest(x.movedim(dim, -1), f, -1)
    n_out = x.shape[-1] - f + 1
    blocks = -(-x.shape[-1] // f)
    pad = blocks * f - x.shape[-1]
    if pad:
        x = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], pad)], -1)
    b = x.reshape(*x.shape[:-1], blocks, f)
    prefix = torch.cummin(b, -1).values.reshape(*x.shape[:-1], -1)
    suffix = torch.cummin(b.flip(-1), -1).values.flip(-1).reshape(*x.shape[:-1], -1)
    out = torch.minimum(suffix[..., :n_out], prefix[..., f - 1:f - 1 + n_out])
    return out.movedim(-1, dim)


def _running_mean_1d(x: torch.Tensor, f: int, dim: int) -> torch.Tensor:
    x = _pad_nearest(x.movedim(dim, -1), f, -1).double()
    c = torch.nn.functional.pad(torch.cumsum(x, -1), (1, 0))
    return ((c[..., f:] - c[..., :-f]) / f).movedim(-1, dim)


def _as_float(frames: torch.Tensor) -> torch.Tensor:
    if frames.ndim < 2 or frames.is_complex() or frames.dtype == torch.bool:
        raise ValueError(f"frames must be a real tensor (..., H, W), got {frames.dtype} {tuple(frames.shape)}")
    return frames if frames.is_floating_point() else frames.float()


def minimum_filter_torch(frames: torch.Tensor, f: int) -> torch.Tensor:
    """MF for a batch (..., H, W) on any device; equals :func:`minimum_filter_background`."""
    x = _as_float(frames)
    if f < 1 or f > min(x.shape[-2:]):
        raise ValueError(f"filter size f={f} must be between 1 and the frame side {min(x.shape[-2:])}")
    return _running_min_1d(_running_min_1d(x, f, -2), f, -1)


def mean_filter_torch(frames: torch.Tensor, f: int) -> torch.Tensor:
    """CS of a batch of MF (..., H, W) on any device; equals :func:`mean_filter_background` (float32)."""
    x = _as_float(frames)
    if f < 1 or f > min(x.shape[-2:]):
        raise ValueError(f"filter size f={f} must be between 1 and the frame side {min(x.shape[-2:])}")
    return _running_mean_1d(_running_mean_1d(x, f, -2), f, -1).to(x.dtype)


# ----- 1D -----

def snip_background(patterns: np.ndarray, iterations: int = 30) -> np.ndarray:
    """SNIP background of each 1D pattern (rows), on the log-log-sqrt (LLS) scale; ``iterations`` is the
    largest clipping half-width in bins (about the widest peak's half-width)."""
    y = np.asarray(patterns, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"patterns must be (n, points), got shape {y.shape}")
    v = np.log(np.log(np.sqrt(np.maximum(y, 0) + 1) + 1) + 1)
    for k in range(1, iterations + 1):  # loop over clipping widths; every pattern and bin at once
        mean = np.full_like(v, np.inf)
        mean[:, k:-k] = (v[:, :-2 * k] + v[:, 2 * k:]) / 2
        v = np.minimum(v, mean)
    return (np.exp(np.exp(v) - 1) - 1) ** 2 - 1
