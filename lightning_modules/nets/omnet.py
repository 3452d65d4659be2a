"""OMNet: crystal orientation from an EBSD pattern, one branch per output.

D. Jha, S. Singh, R. Al-Bahrani, W.-k. Liao, A. Choudhary, M. De Graef, A. Agrawal, "Extracting grain
orientations from EBSD patterns of polycrystalline materials using convolutional neural networks",
Microsc. Microanal. 24, 497 (2018); dissertation ch. 6, Fig. 6.3; review 002. What the sources give: a
shared convolutional trunk ("the first four model components are composed of multiple convolution layers
and max pooling") and a shared first fully connected layer, then three independent branches, one per Euler
angle, "each ... around 2 million parameters"; eight convolutions, two poolings, five fully connected
layers (one shared + four per branch on any input-to-output path), about 200 million parameters in all.
Fig. 6.3 itself (the widths) is not in our text, so the widths are ours, chosen to meet those counts:

- paper profile (``configs/profiles/paper/omnet.yaml``): 3×3 convolutions of 64, 64 | pool | 128, 128 |
  pool | 256, 256, 256, 256 filters on 60×60 patterns (60 → 30 → 15), shared dense 57,600 → 3,328, branches
  3,328 → 512 → 512 → 256 → 1, batch normalisation after each hidden layer: 200,333,763 parameters,
  2,101,249 per branch (Euler head; counted in ``tests/test_ebsd.py``).
- CPU default (``configs/tasks/omnet.yaml``, the class defaults): the same layer structure, narrower
  (8, 8 | 16, 16 | 32 × 4 filters; shared 7,200 → 256; branches 128, 128, 64): 2,055,963 parameters.

``representation`` decides the outputs (:data:`materials.orientations.REPRESENTATIONS`): ``euler`` (three
branches: φ1, Φ, φ2, as the paper), ``quaternion`` (four) or ``rot6d`` (six, Zhou et al. 2019); each branch
emits one number.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from materials.orientations import REPRESENTATIONS


def fold_batch_norm(layers: nn.Sequential) -> nn.Sequential:
    """``layers`` (in eval mode) with each BatchNorm folded into the convolution or dense layer just before it."""
    folded, pending = [], None
    for layer in layers:
        if isinstance(layer, nn.BatchNorm2d) and isinstance(pending, nn.Conv2d):
            pending = fuse_conv_bn_eval(pending, layer)
        elif isinstance(layer, nn.BatchNorm1d) and isinstance(pending, nn.Linear):
            pending = fuse_linear_bn_eval(pending, layer)
        else:
            folded += [pending] if pending is not None else []
            pending = layer
    return nn.Sequential(*folded, *([pending] if pending is not None else []))


def standardized(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each (H, W) pattern of (B, 1, H, W) to zero mean and unit standard deviation (a flat one becomes 0)."""
    centred = x - x.mean(dim=(-2, -1), keepdim=True)
    return centred / (centred.square().mean(dim=(-2, -1), keepdim=True).sqrt() + eps)


class OMNet(nn.Module):
    """(B, 1, H, W) patterns in [0, 1] → (B, k) orientation outputs (k = 3, 4 or 6 by ``representation``).

    Args:
        n_features: pattern side in pixels (linked from the datamodule's detector).
        channels: filters of the 3×3 convolutions (eight in the paper).
        pool_after: indices of the convolutions followed by a 2×2 max pooling.
        shared_width: the shared first fully connected layer.
        branch_widths: hidden widths of each branch before its single output.
        batch_norm: batch normalisation after every convolution and hidden dense layer.
        standardize: bring each pattern to zero mean and unit standard deviation first (what kikuchipy's
            ``normalize_intensity`` does), so that the gain and offset a measurement leaves after the [0, 1]
            rescaling (which follows the single brightest and darkest pixels) do not reach the net.
    """

    def __init__(self, n_features: int = 60, channels: tuple[int, ...] = (8, 8, 16, 16, 32, 32, 32, 32),
                 pool_after: tuple[int, ...] = (1, 3), shared_width: int = 256,
                 branch_widths: tuple[int, ...] = (128, 128, 64), batch_norm: bool = True,
                 representation: Literal["euler", "quaternion", "rot6d"] = "euler", standardize: bool = False):
        super().__init__()
        self.standardize = standardize
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {sorted(REPRESENTATIONS)}, got {representation!r}")
        self.representation = representation
        layers, width, size = [], 1, n_features
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(width, c, 3, padding=1)] + ([nn.BatchNorm2d(c)] if batch_norm else []) + [nn.ReLU()]
            if i in pool_after:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            width = c
        if size < 1:
            raise ValueError(f"{len(pool_after)} poolings need patterns of at least {2 ** len(pool_after)} pixels, "
                             f"got {n_features}")
        self.trunk = nn.Sequential(*layers, nn.Flatten(), *self._dense(width * size * size, shared_width, batch_norm))
        rep = REPRESENTATIONS[representation]
        self.branches = nn.ModuleList(self._branch(shared_width, branch_widths, batch_norm) for _ in range(rep.size))
        self.register_buffer("offset", torch.tensor(rep.offset), persistent=False)
        self.register_buffer("scale", torch.tensor(rep.scale), persistent=False)

    @staticmethod
    def _dense(n_in: int, n_out: int, batch_norm: bool) -> list[nn.Module]:
        return [nn.Linear(n_in, n_out)] + ([nn.BatchNorm1d(n_out)] if batch_norm else []) + [nn.ReLU()]

    def _branch(self, n_in: int, widths: tuple[int, ...], batch_norm: bool) -> nn.Sequential:
        layers = []
        for w in widths:
            layers += self._dense(n_in, w, batch_norm)
            n_in = w
        return nn.Sequential(*layers, nn.Linear(n_in, 1))

    def for_inference(self) -> OMNet:
        """A frozen copy for prediction with the same outputs (to float rounding): batch normalisation folded
        into the layer before it, the weights channels-last (NHWC; a one-channel pattern is already laid out
        so), the layout oneDNN convolves these narrow layers fastest in on a CPU (``make bench-ebsd``)."""
        net = copy.deepcopy(self).eval()
        net.trunk = fold_batch_norm(net.trunk)
        net.branches = nn.ModuleList(fold_batch_norm(branch) for branch in net.branches)
        return net.to(memory_format=torch.channels_last).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardize:
            x = standardized(x)
        shared = self.trunk(x)
        hidden = [branch[:-1](shared) for branch in self.branches]
        # each branch's output layer in float32 even under bf16 autocast: bfloat16's 8 significant bits are ~0.4°
        with torch.autocast(x.device.type, enabled=False):
            out = torch.cat([branch[-1](h.float()) for branch, h in zip(self.branches, hidden)], dim=1)
        return self.offset + self.scale * out
