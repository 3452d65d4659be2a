"""First-order materials knowledge systems (MKS) localization: the localization baseline.

Kalidindi et al.'s MKS (Landi, Niezgoda, Kalidindi, Acta Mater. 58, 2716 (2010);
Fast et al., Acta Mater. 59, 699 (2011)) writes the local response as a convolution
of calibrated influence kernels with the local-state fields,
p(x) = Σ_h Σ_r α_h(r) m_h(x − r), with m_1 the phase-1 indicator and m_0 = 1 − m_1.
In Fourier space the convolution is a product, so every frequency k is its own
least-squares fit over the training elements. Since m̂_0(k) = −m̂_1(k) for k ≠ 0, one
coefficient per frequency carries the fit there; k = 0 (the mean) fits both states.
Yang et al. 2019 report MASE 10.86 % (contrast 10) and 26.46 % (contrast 50) for it.
"""

from __future__ import annotations

import numpy as np

from materials.microstructure import validate_voxels


class MKSLocalization:
    """Per-frequency least squares of the response on the phase-1 indicator."""

    def fit(self, micro, response, batch: int = 64) -> MKSLocalization:
        micro = validate_voxels(np.asarray(micro), "micro")
        response = np.asarray(response, dtype=np.float64)
        if response.shape != micro.shape:
            raise ValueError(f"response shape {response.shape} differs from microstructure shape {micro.shape}")
        self.shape = micro.shape[1:]
        numerator, denominator = 0, 0
        counts, means = [], []
        for first in range(0, len(micro), batch):
            m = micro[first:first + batch].astype(np.float64)
            m_hat = np.fft.rfftn(m, axes=(1, 2, 3))
            p_hat = np.fft.rfftn(response[first:first + batch], axes=(1, 2, 3))
            numerator = numerator + (m_hat.conj() * p_hat).sum(axis=0)
            denominator = denominator + (np.abs(m_hat) ** 2).sum(axis=0)
            counts.append(m.mean(axis=(1, 2, 3)))
            means.append(response[first:first + batch].mean(axis=(1, 2, 3)))
        safe = denominator > 1e-12 * max(float(denominator.max()), 1e-300)
        self.coefficients = np.where(safe, numerator / np.where(safe, denominator, 1), 0)
        # the mean: ⟨p⟩ = a0 (1 − f) + a1 f, least squares over elements
        f, mean = np.concatenate(counts), np.concatenate(means)
        (self.a0, self.a1), *_ = np.linalg.lstsq(np.column_stack([1 - f, f]), mean, rcond=None)
        return self

    def predict(self, micro) -> np.ndarray:
        micro = validate_voxels(np.asarray(micro), "micro")
        if micro.shape[1:] != self.shape:
            raise ValueError(f"MKS kernel was fitted on {self.shape} grids, got {micro.shape[1:]}")
        m = micro.astype(np.float64)
        hat = np.fft.rfftn(m, axes=(1, 2, 3)) * self.coefficients
        hat[:, 0, 0, 0] = 0
        f = m.mean(axis=(1, 2, 3))
        fluctuation = np.fft.irfftn(hat, s=self.shape, axes=(1, 2, 3))
        return fluctuation + (self.a0 * (1 - f) + self.a1 * f)[:, None, None, None]

    @property
    def influence_kernel(self) -> np.ndarray:
        """The real-space kernel α_1(r) of the fluctuations (zero offset at the centre)."""
        hat = self.coefficients.copy()
        hat[0, 0, 0] = 0
        return np.fft.fftshift(np.fft.irfftn(hat, s=self.shape))
