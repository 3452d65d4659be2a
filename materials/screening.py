"""The screening engine: score enumerated compositions and compare them with the hull.

``Scorer`` runs a trained composition model over element combinations x ratio
patterns built directly on the device (fractions never leave it for ElemNet;
Magpie inputs are computed on the CPU). ``screen_chunk`` turns one enumeration
chunk into its candidates: compositions predicted at least ``threshold``
eV/atom below the convex hull of the training data (diss. 3.3.9). The exact
per-system hull (``materials.hull``) is only computed for systems where a
cheap upper bound (mixtures of binary-hull points) leaves a composition that
could still be a candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from materials.elements import ELEMNET_ELEMENTS, N_ELEMENTS
from materials.enumeration import Chunk, chunk_combinations, formula, ratio_patterns
from materials.hull import BinaryHullTable, HullIndex

BOUND_SLACK = 1e-6  # eV/atom: the exact hull may sit this far above the bound (Qhull rounding)
MAX_PRECISION_ERROR = 1e-3  # eV/atom: mixed precision is used only if it changes no prediction more


class Scorer:
    """A trained composition model, applied to enumerated compositions in large batches."""

    def __init__(self, module, datamodule, device: str = "auto", precision: str = "auto", batch_size: int = 0):
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
        self.module = module.to(self.device).eval()
        self.datamodule = datamodule
        self.features = datamodule.hparams.features
        self.batch_size = batch_size or (262_144 if self.device.type == "cuda" else 4_096)
        self.precision = precision
        self.max_precision_error: float | None = None
        self._calibrated = torch.float32

    def inputs(self, fractions: torch.Tensor) -> torch.Tensor:
        if self.features == "fractions":
            return self.datamodule.transform(fractions)
        from datamodules.composition import featurize

        feats = torch.from_numpy(featurize(fractions.cpu().numpy(), self.features))
        return self.datamodule.transform(feats).to(self.device)

    @torch.inference_mode()
    def predict(self, fractions: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Predictions (float32) for (n, 86) fractions on the device."""
        dtype = self._dtype() if dtype is None else dtype
        out = []
        for part in fractions.split(self.batch_size):
            x = self.inputs(part)
            if dtype == torch.float32:
                out.append(self.module(x).squeeze(1).float())
            else:
                with torch.autocast(self.device.type, dtype=dtype):
                    out.append(self.module(x).squeeze(1).float())
        return torch.cat(out) if out else torch.empty(0, device=self.device)

    def _dtype(self) -> torch.dtype:
        if self.precision in ("auto", "32"):
            return torch.float32 if self.precision == "32" or self.device.type != "cuda" else self._calibrated
        return {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}[self.precision]

    def calibrate(self, fractions: torch.Tensor) -> None:
        """On a GPU with precision ``auto``: keep mixed precision only if it moves no prediction
        of this sample by more than 1e-3 eV/atom (float16 first, then bfloat16), else float32."""
        self._calibrated = torch.float32
        if self.precision != "auto" or self.device.type != "cuda":
            return
        reference = self.predict(fractions, torch.float32)
        for dtype in (torch.float16, torch.bfloat16):
            error = float((self.predict(fractions, dtype) - reference).abs().max())
            if error <= MAX_PRECISION_ERROR:
                self._calibrated, self.max_precision_error = dtype, error
                return

    @property
    def has_std(self) -> bool:
        """Whether the model was trained with uncertainty (MC dropout or an ensemble)."""
        return getattr(self.module.hparams, "uncertainty", "none") != "none"

    @torch.inference_mode()
    def upper_95(self, fractions: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(σ, upper end of the central 95 % interval) of the predictive distribution, float32 on the CPU.

        With a calibration in the model (:mod:`lightning_modules.calibration`) both are the calibrated ones;
        without, σ is the net's own and the interval is μ + 1.96 σ."""
        sigmas, uppers = [], []
        calibration = getattr(self.module, "calibration", None)
        for part in fractions.split(self.batch_size):
            mean, std = self.module.raw_predict_with_std(self.inputs(part))
            mean, std = mean.squeeze(1).float(), std.squeeze(1).float()
            if calibration is None:
                sigmas.append(std), uppers.append(mean + 1.959964 * std)
            else:
                sigmas.append(calibration.sigma(std)), uppers.append(calibration.interval(mean, std, 0.95)[1])
        return torch.cat(sigmas).cpu().numpy(), torch.cat(uppers).cpu().numpy()

    @property
    def sigma_kind(self) -> str:
        """How candidates' σ are made: ``none``, ``raw`` or the calibration's method."""
        if not self.has_std:
            return "none"
        calibration = getattr(self.module, "calibration", None)
        return "raw" if calibration is None else calibration.method

    @property
    def precision_used(self) -> str:
        return {torch.float32: "32", torch.float16: "16-mixed", torch.bfloat16: "bf16-mixed"}[self._dtype()]


def chunk_fractions(ids: np.ndarray, combos: np.ndarray, arity: int, max_sum: int,
                    device: torch.device) -> torch.Tensor:
    """(m * p, 86) fractions of every combination x ratio pattern, built on the device."""
    patterns = torch.as_tensor(ratio_patterns(arity, max_sum), dtype=torch.float32, device=device)
    weights = patterns / patterns.sum(dim=1, keepdim=True)  # (p, k)
    columns = torch.as_tensor(ids[combos], device=device)  # (m, k)
    m, p = len(combos), len(patterns)
    x = torch.zeros(m, p, N_ELEMENTS, device=device)
    x.scatter_(2, columns[:, None, :].expand(m, p, arity), weights[None].expand(m, p, arity).contiguous())
    return x.reshape(m * p, N_ELEMENTS)


CANDIDATES = pa.schema([("formula", pa.string()), ("system", pa.string()), ("arity", pa.int8()),
                        ("predicted_dhf", pa.float64()), ("hull_energy", pa.float64()), ("distance", pa.float64()),
                        ("chunk", pa.int32()), ("std", pa.float64()), ("distance_high_95", pa.float64()),
                        ("confident_95", pa.bool_())])
"""One row per candidate; energies in eV/atom. For a model trained with uncertainty: ``std`` is the (calibrated)
σ, ``distance_high_95`` the distance to the hull at the upper end of the central 95 % interval, and ``confident_95``
whether even that is ``threshold`` below the hull (null for a model without σ)."""


@dataclass
class ChunkResult:
    candidates: pd.DataFrame
    n_compositions: int
    n_exact_hulls: int


def hull_energies(ids: np.ndarray, combos: np.ndarray, patterns: np.ndarray, pred: np.ndarray, threshold: float,
                  index: HullIndex, binaries: BinaryHullTable) -> tuple[np.ndarray, int]:
    """(m, p) hull energies, exact wherever a composition could be a candidate; and how many
    systems needed an exact hull. Elsewhere the value is the binary-mixture upper bound."""
    m, p, k = len(combos), len(patterns), combos.shape[1]
    x = np.broadcast_to(patterns / patterns.sum(axis=1, keepdims=True), (m, p, k))
    hull = binaries.binary_bound(combos, x)  # exact for binaries, an upper bound otherwise
    if k == 2:
        return hull, 0
    open_ = (pred <= hull - threshold + BOUND_SLACK).any(axis=1)  # systems that may hold a candidate
    if open_.any():
        exact = index.hull_energy_grouped(ids[combos[open_]], np.ascontiguousarray(x[open_]))
        hull[open_] = np.minimum(exact, hull[open_])
    return hull, int(open_.sum())


def screen_chunk(chunk: Chunk, ids: np.ndarray, max_sum: int, threshold: float, scorer: Scorer,
                 index: HullIndex, binaries: BinaryHullTable) -> ChunkResult:
    """Score one chunk and keep compositions predicted >= threshold below the training hull."""
    k = chunk.arity
    combos = chunk_combinations(chunk, len(ids))  # positions in ids
    patterns = ratio_patterns(k, max_sum)
    m, p = len(combos), len(patterns)
    fractions = chunk_fractions(ids, combos, k, max_sum, scorer.device)
    pred = scorer.predict(fractions).double().cpu().numpy().reshape(m, p)
    hull, n_exact = hull_energies(ids, combos, patterns, pred, threshold, index, binaries)
    distance = pred - hull
    rows, cols = np.nonzero(distance <= -threshold)
    std = high = np.full(len(rows), np.nan)
    if scorer.has_std and len(rows):  # σ only where it matters: MC dropout takes many passes
        std, upper = scorer.upper_95(fractions[torch.as_tensor(rows * p + cols, device=fractions.device)])
        high = upper.astype(np.float64) - hull[rows, cols]
    symbols = np.array(ELEMNET_ELEMENTS)[ids[combos[rows]]]  # (n, k)
    table = pd.DataFrame({
        "formula": [formula(s, patterns[c]) for s, c in zip(symbols, cols)],
        "system": ["-".join(s) for s in symbols],
        "arity": np.full(len(rows), k, dtype=np.int8),
        "predicted_dhf": pred[rows, cols],
        "hull_energy": hull[rows, cols],
        "distance": distance[rows, cols],
        "chunk": np.full(len(rows), chunk.index, dtype=np.int32),
        "std": std.astype(np.float64),
        "distance_high_95": high,
        "confident_95": pd.array(high <= -threshold if scorer.has_std else [pd.NA] * len(rows), dtype="boolean"),
    })
    return ChunkResult(table, m * p, n_exact)
