"""PADNet: phase regions from raw 2D diffraction frames (diss. ch. 7, Figs. 7.3–7.5).

Dipendra Jha et al., "Peak area detection network for directly learning phase regions from
raw X-ray diffraction patterns", IJCNN 2019 (dissertation chapter 7). Three components:

1. a convolutional graph per frame (SLAC: one frame; NIST: two frames, so two graphs with half
   the filters each, Fig. 7.3) that starts with the peak area detection component (Fig. 7.4):
   four f × f slope filters F1, F2, VF, HF (Eq. 7.1–7.5, f = 50 at 2048², frozen or trainable),
   absolute value (7.6), an f × f max filter (7.7), batch normalisation and a softmax over the
   frame (7.8);
2. a dense branch for the composition: 2 layers of 256 (7.3.3);
3. a classifier on both: 256 → ``n_classes`` (8), softmax in the loss. ReLU, batch norm after
   every layer.

What the text does not give (Fig. 7.5 is an image) is chosen here and is an option: the
convolutional graph after the peak area detection is ``len(channels)`` blocks of 3×3 convolution,
batch norm, ReLU and 2×2 max pooling (default 16, 32, 64, 64 filters; NIST: 8, 16, 32, 32 per
graph), then adaptive max pooling to ``grid`` × ``grid`` (8 × 8) so the flattened size (64 × 64
= 4,096 per model) keeps coarse positions (2θ, χ) whatever the frame size; the max filter has
``pool_stride`` (1 = the dense filter of Eq. 7.7); the softmax output is multiplied by the number
of pixels (mean 1) so the next layers see unit-scale inputs. Borders are replicated (a flat
background stays flat at the frame edge). The slope filters use ``filter_size``: keep 50 px at
2048² (the paper), about 50 × side / 2048 on a smaller frame.

``spatial_softmax: false`` skips Eq. 7.8: ring responses are sparse, so after batch normalisation
a strong ring stands many standard deviations above the rest and the softmax keeps little more
than each sample's strongest ring. The CPU configs turn it off: on SLAC folds 0–2 of 10, test
accuracy 0.778 / 0.889 / 0.833 with it against 0.889 / 0.944 / 0.833 without (docs/results/xrd.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from materials.xrd_background import slope_filters


def pad_replicate(x: torch.Tensor, f: int) -> torch.Tensor:
    """Replicate-pad the last two dims for an f-wide window centred as scipy's (f//2 before, (f-1)//2 after)."""
    before, after = f // 2, (f - 1) // 2
    return F.pad(x, (before, after, before, after), mode="replicate")


def max_filter(x: torch.Tensor, f: int, stride: int = 1) -> torch.Tensor:
    """f × f maximum filter (Eq. 7.7) of (B, C, H, W), separable (two 1D max pools), sampled every ``stride``."""
    x = pad_replicate(x, f)
    x = F.max_pool2d(x, (f, 1), stride=(stride, 1))
    return F.max_pool2d(x, (1, f), stride=(1, stride))


class PeakAreaDetection(nn.Module):
    """Slope filters → |·| → max filter → batch norm → spatial softmax (Eq. 7.1–7.8), (B, 1, H, W) → (B, 4, H', W')."""

    def __init__(self, filter_size: int = 50, trainable: bool = False, pool_stride: int = 1, softmax: bool = True):
        super().__init__()
        self.filter_size, self.pool_stride, self.softmax = filter_size, pool_stride, softmax
        self.slope = nn.Parameter(torch.from_numpy(slope_filters(filter_size))[:, None], requires_grad=trainable)
        self.norm = nn.BatchNorm2d(4)

    def slopes(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 7.5: Σ_{x,y} I_{i+x, j+y} F_{x,y} for each of the four filters (a correlation, as conv2d)."""
        return F.conv2d(pad_replicate(x, self.filter_size), self.slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = max_filter(self.slopes(x).abs(), self.filter_size, self.pool_stride)
        x = self.norm(x)
        if not self.softmax:
            return x
        b, c, h, w = x.shape
        return torch.softmax(x.reshape(b, c, h * w), -1).reshape(b, c, h, w) * (h * w)


class ConvGraph(nn.Module):
    """One frame's convolutional graph: peak area detection, conv blocks, adaptive max pooling, flatten."""

    def __init__(self, filter_size: int, trainable_filters: bool, pool_stride: int, channels: tuple[int, ...],
                 grid: int, spatial_softmax: bool = True):
        super().__init__()
        self.peaks = PeakAreaDetection(filter_size, trainable_filters, pool_stride, spatial_softmax)
        layers, width = [], 4
        for c in channels:
            layers += [nn.Conv2d(width, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            width = c
        layers += [nn.AdaptiveMaxPool2d(grid), nn.Flatten()]
        self.blocks = nn.Sequential(*layers)
        self.out_features = width * grid * grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.peaks(x))


def _dense(n_in: int, n_out: int, dropout: float = 0.0) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])


class PADNet(nn.Module):
    """(frames (B, n_frames, N, N) counts, composition (B, n_composition)) → (B, n_classes) logits.

    Args:
        n_features: frame side N in pixels (linked from the datamodule).
        n_frames: frames per sample: 1 (SLAC) or 2 (NIST: two graphs with half the filters each).
        filter_size: f of the slope filters and the max filter (50 at 2048²).
        trainable_filters: learn the slope filters (Fig. 7.7's "trainable") or keep Eq. 7.1–7.4 ("frozen").
        pool_stride: stride of the max filter (1: Eq. 7.7 at every pixel).
        channels: filters of the convolution blocks for one frame (halved per graph when n_frames = 2).
        grid: adaptive max pooling to grid × grid before flattening.
        composition_width / classifier_width: 256 and 256 (7.3.3).
        dropout: before the last layer (not in the paper; 0.5 in the CPU config against overfitting 160 samples).
        spatial_softmax: Eq. 7.8 (the paper's); ``false`` passes the batch-normalised map on unchanged.
    """

    def __init__(self, n_features: int = 256, n_frames: int = 1, n_classes: int = 8, n_composition: int = 3,
                 filter_size: int = 50, trainable_filters: bool = False, pool_stride: int = 1,
                 channels: tuple[int, ...] = (16, 32, 64, 64), grid: int = 8, composition_width: int = 256,
                 classifier_width: int = 256, dropout: float = 0.0, spatial_softmax: bool = True):
        super().__init__()
        if n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {n_frames}")
        if filter_size > n_features:
            raise ValueError(f"filter_size {filter_size} is larger than the frame side {n_features}")
        self.n_features, self.n_frames, self.n_composition = n_features, n_frames, n_composition
        per_graph = tuple(max(1, c // n_frames) for c in channels)
        self.graphs = nn.ModuleList(ConvGraph(filter_size, trainable_filters, pool_stride, per_graph, grid,
                                              spatial_softmax)
                                    for _ in range(n_frames))
        self.composition = nn.Sequential(*_dense(n_composition, composition_width),
                                         *_dense(composition_width, composition_width))
        image_features = sum(g.out_features for g in self.graphs)
        self.classifier = nn.Sequential(*_dense(image_features + composition_width, classifier_width, dropout),
                                        nn.Linear(classifier_width, n_classes))

    def check_inputs(self, frames: torch.Tensor, composition: torch.Tensor) -> None:
        if not frames.is_floating_point() or frames.ndim != 4:
            raise ValueError(f"PADNet takes float frames (batch, {self.n_frames}, {self.n_features}, {self.n_features}),"
                             f" got {frames.dtype} {tuple(frames.shape)}")
        if frames.shape[1] != self.n_frames:
            hint = " (the NIST model needs both frames, 2θ 10-40° and 30-60°)" if self.n_frames == 2 else ""
            raise ValueError(f"PADNet was built for {self.n_frames} frame(s) per sample, got {frames.shape[1]}{hint}")
        if frames.shape[2:] != (self.n_features, self.n_features):
            raise ValueError(f"PADNet was built for {self.n_features}² frames, got {tuple(frames.shape[2:])}")
        if composition.ndim != 2 or composition.shape != (len(frames), self.n_composition):
            raise ValueError(f"composition must be (batch, {self.n_composition}), got {tuple(composition.shape)}")

    def forward(self, frames: torch.Tensor, composition: torch.Tensor) -> torch.Tensor:
        self.check_inputs(frames, composition)
        image = [g(frames[:, k:k + 1]) for k, g in enumerate(self.graphs)]
        return self.classifier(torch.cat([*image, self.composition(composition)], 1))
