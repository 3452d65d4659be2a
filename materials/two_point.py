"""2-point statistics + PCA + polynomial regression: the homogenization baseline.

The materials knowledge systems route to structure–property linkages (Kalidindi,
Niezgoda, Salem, Acta Mater. 59, 4437 (2011); Gupta et al., Acta Mater. 91, 239
(2015)), which Yang et al. 2018 beat with their 3-D CNN (6.79 % vs 3.10 %): the
periodic autocorrelation of the phase-1 indicator, reduced by PCA fitted on the
training elements only, then a low-order polynomial regression on the PC scores.
"""

from __future__ import annotations

import numpy as np

from materials.microstructure import validate_voxels


def autocorrelation(micro, cutoff: int | None = None, batch: int = 64, device: str | None = None) -> np.ndarray:
    """Periodic autocorrelation of phase 1, (n, …) float32, zero offset at the centre (= volume fraction).

    ``cutoff`` keeps offsets |r_i| ≤ cutoff: shape (n, 2c+1, 2c+1, 2c+1). The FFTs run in
    float64 through PyTorch, on ``device`` (default: a GPU when present, else every CPU core).
    """
    import torch

    from materials.descriptors import two_point

    micro = validate_voxels(np.asarray(micro), "micro")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    keep = tuple(slice(None) if cutoff is None else slice(s // 2 - cutoff, s // 2 + cutoff + 1)
                 for s in micro.shape[1:])
    out = []
    for first in range(0, len(micro), batch):
        corr = two_point(torch.from_numpy(micro[first:first + batch]).to(device, torch.float64))
        out.append(corr[(slice(None), *keep)].float().cpu().numpy())
    return np.concatenate(out)


class TwoPointPCARegression:
    """PCA of the autocorrelations (fitted on the training set) → polynomial ridge regression."""

    def __init__(self, n_components: int = 5, degree: int = 2, cutoff: int | None = None, alpha: float = 1e-3):
        self.n_components, self.degree, self.cutoff, self.alpha = n_components, degree, cutoff, alpha

    def _features(self, micro) -> np.ndarray:
        stats = autocorrelation(micro, self.cutoff)
        return stats.reshape(len(stats), -1)

    def fit(self, micro, y) -> TwoPointPCARegression:
        from sklearn.decomposition import PCA
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import PolynomialFeatures, StandardScaler

        y = np.asarray(y, dtype=float)
        if len(y) != len(micro):
            raise ValueError(f"{len(micro)} microstructures but {len(y)} targets")
        self.pca = PCA(n_components=self.n_components, random_state=0)
        scores = self.pca.fit_transform(self._features(micro))
        self.regression = make_pipeline(StandardScaler(), PolynomialFeatures(self.degree), Ridge(alpha=self.alpha))
        self.regression.fit(scores, y)
        return self

    def predict(self, micro) -> np.ndarray:
        return self.regression.predict(self.pca.transform(self._features(micro)))

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        return self.pca.explained_variance_ratio_
