"""Recalibrating a predictive standard deviation on held-out rows, so that its intervals cover what they say.

A net's σ (MC dropout, an ensemble) is a relative measure: the intervals μ ± z σ of a normal are usually far
too narrow. Given held-out rows (the validation split), with normalised errors r = |y − μ| / σ:

- ``scale``: one factor s, s² = mean(r²) (the maximum-likelihood variance scale of a normal): σ' = s σ, and the
  central interval at level α is μ ± Φ⁻¹((1 + α)/2) σ';
- ``conformal``: split-conformal intervals on the normalised score r (Papadopoulos et al. 2002; Lei et al.
  2018): the half-width at level α is q_α σ, q_α the ⌈(n + 1) α⌉-th smallest r of the n held-out rows, which
  covers a new exchangeable row with probability ≥ α whatever r's distribution; σ' = q_0.6827 σ is the σ a
  reader of ± 1σ expects.

:class:`SigmaCalibration` keeps q_α at the levels of :data:`LEVELS` (the method's own formula for ``scale``),
so both methods answer the same questions: σ', the interval at any level, the coverage and NLL on new rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


LEVELS = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)  # central-interval probabilities kept
ONE_SIGMA = math.erf(1 / math.sqrt(2))  # 0.6827: the probability inside ± 1σ of a normal
METHODS = ("conformal", "scale")


@dataclass
class SigmaCalibration:
    """σ recalibrated on ``n`` held-out rows by ``method``: ``half_widths[i]`` = q at ``LEVELS[i]`` (in σ)."""

    method: str
    half_widths: torch.Tensor
    n: int

    @classmethod
    def fit(cls, mean: torch.Tensor, std: torch.Tensor, true: torch.Tensor, method: str = "conformal"):
        if method not in METHODS:
            raise ValueError(f"calibration method {method!r}: use one of {', '.join(METHODS)}")
        r = ((true - mean).abs() / std.clamp_min(1e-12)).double().flatten()
        n = len(r)
        if n < 10:
            raise ValueError(f"calibration needs at least 10 held-out rows with a standard deviation, got {n}")
        if method == "scale":
            half_widths = (r.square().mean().sqrt() * torch.special.ndtri((1 + LEVELS) / 2))
        else:  # the ⌈(n + 1) α⌉-th smallest score (the largest one beyond n)
            ranks = torch.ceil((n + 1) * LEVELS).long().clamp(max=n) - 1
            half_widths = r.sort().values[ranks]
        return cls(method, half_widths.float(), n)

    def half_width(self, level: float) -> float:
        """The interval's half-width in σ at ``level`` (interpolated between the kept levels)."""
        if not LEVELS[0] <= level <= LEVELS[-1]:
            raise ValueError(f"interval level {level} outside [{LEVELS[0]:.2f}, {LEVELS[-1]:.2f}]")
        i = int(torch.searchsorted(LEVELS, torch.tensor(level, dtype=torch.float64)).clamp(1, len(LEVELS) - 1))
        a, b = float(LEVELS[i - 1]), float(LEVELS[i])
        t = (level - a) / (b - a)
        return float((1 - t) * self.half_widths[i - 1] + t * self.half_widths[i])

    def sigma(self, std: torch.Tensor) -> torch.Tensor:
        """σ': μ ± σ' holds 68.27 % of new rows."""
        return std * self.half_width(ONE_SIGMA)

    def interval(self, mean: torch.Tensor, std: torch.Tensor, level: float) -> tuple[torch.Tensor, torch.Tensor]:
        h = std * self.half_width(level)
        return mean - h, mean + h

    def scores(self, mean: torch.Tensor, std: torch.Tensor, true: torch.Tensor) -> dict[str, torch.Tensor]:
        """Coverage of the calibrated 68 % and 95 % intervals, and the NLL of the normal N(μ, σ'²)."""
        r = (true - mean).abs() / std.clamp_min(1e-12)
        s = self.sigma(std).clamp_min(1e-6)
        nll = 0.5 * math.log(2 * math.pi) + s.log() + 0.5 * ((true - mean) / s) ** 2
        return {"coverage_68": (r <= self.half_width(0.68)).float().mean(),
                "coverage_95": (r <= self.half_width(0.95)).float().mean(), "nll": nll.mean(),
                "std_mean": s.mean()}

    def state(self) -> dict:
        return {"method": self.method, "half_widths": self.half_widths.tolist(), "n": self.n,
                "levels": LEVELS.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> SigmaCalibration:
        if len(state["half_widths"]) != len(LEVELS):
            raise ValueError(f"a calibration kept at {len(state['half_widths'])} levels, this version keeps "
                             f"{len(LEVELS)}")
        return cls(state["method"], torch.tensor(state["half_widths"], dtype=torch.float32), int(state["n"]))

