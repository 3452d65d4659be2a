"""IRNet, SRNet and the plain deep regression network.

Jha, Ward, Yang, Liao, Choudhary, Wolverton, Agrawal, "IRNet: A General Purpose
Deep Residual Regression Framework for Materials Discovery", KDD 2019;
dissertation chapter 4.

Each "layer" is Linear → BatchNorm → ReLU; the last is a plain Linear. A
*plain* net has no shortcuts, *SRNet* ("stacked") puts a shortcut around each
stack of equal-width layers, *IRNet* ("individual") around every layer. Where
the widths differ the shortcut is a linear projection, y = F(x) + W_s x (Eq. 4.1).

The 17-layer stacks are ElemNet's (4×1024, 3×512, 3×256, 3×128, 2×64, 1×32).
Table 4.1 with the 24- and 48-layer stacks did not survive in the
dissertation's text, so deeper nets scale every stack in proportion
(largest-remainder rounding): 24 → 6,4,4,4,3,2 and 48 → 11,9,9,9,6,3 layers.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from torch import nn

WIDTHS = (1024, 512, 256, 128, 64, 32)
BASE_COUNTS = (4, 3, 3, 3, 2, 1)


def stack_sizes(depth: int) -> list[tuple[int, int]]:
    """(width, layers) per stack for a net of ``depth`` layers (output included)."""
    hidden = depth - 1
    if hidden < len(WIDTHS):
        raise ValueError(f"depth {depth} is too small: at least {len(WIDTHS) + 1} layers")
    exact = np.array(BASE_COUNTS, dtype=float) * hidden / sum(BASE_COUNTS)
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: hidden - counts.sum()]:
        counts[i] += 1
    return list(zip(WIDTHS, counts.tolist()))


class _Layer(nn.Sequential):
    def __init__(self, width_in: int, width: int):
        super().__init__(nn.Linear(width_in, width), nn.BatchNorm1d(width), nn.ReLU())


class _Residual(nn.Module):
    """F(x) + x, or F(x) + W_s x where the widths differ (Eq. 4.1)."""

    def __init__(self, body: nn.Module, width_in: int, width: int):
        super().__init__()
        self.body = body
        self.projection = nn.Linear(width_in, width, bias=False) if width_in != width else nn.Identity()

    def forward(self, x):
        return self.body(x) + self.projection(x)


class IRNet(nn.Module):
    """Deep regression MLP with individual, stacked or no residual shortcuts.

    Args:
        n_features: input width (145 Magpie attributes by default).
        depth: number of layers including the output (17, 24, 48, ...).
        shortcut: ``individual`` (IRNet), ``stacked`` (SRNet) or ``none`` (plain).
        stacks: explicit (width, layers) per stack; overrides ``depth``.
    """

    def __init__(self, n_features: int = 145, depth: int = 17,
                 shortcut: Literal["individual", "stacked", "none"] = "individual",
                 stacks: list[tuple[int, int]] | None = None, n_targets: int = 1):
        super().__init__()
        if shortcut not in ("individual", "stacked", "none"):
            raise ValueError(f"shortcut must be individual, stacked or none, not {shortcut!r}")
        stacks = stacks or stack_sizes(depth)
        blocks: list[nn.Module] = []
        width_in = n_features
        for width, count in stacks:
            widths = [width_in] + [width] * count
            layers = [_Layer(a, b) for a, b in zip(widths[:-1], widths[1:])]
            if shortcut == "individual":
                blocks += [_Residual(layer, a, b) for layer, a, b in zip(layers, widths[:-1], widths[1:])]
            elif shortcut == "stacked":
                blocks.append(_Residual(nn.Sequential(*layers), width_in, width))
            else:
                blocks += layers
            width_in = width
        self.blocks = nn.Sequential(*blocks)
        self.output = nn.Linear(width_in, n_targets)

    def forward(self, x):
        return self.output(self.blocks(x))
