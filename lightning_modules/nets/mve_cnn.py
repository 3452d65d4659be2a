"""CNNs for microstructure–property linkages of two-phase composites.

- :class:`HomogenizationCNN` — Yang, Yabansu, Agrawal, Liao, Kalidindi, Choudhary,
  "Deep learning approaches for mining structure-property linkages in high contrast
  composites from simulation datasets", Comput. Mater. Sci. 151, 278 (2018): a 3-D CNN
  of five convolution + pooling blocks and two dense layers (~3.8M parameters) maps a
  51³ volume element to its effective stiffness. Our sources (review 002) give the block
  count and the parameter total, not the widths; the defaults here — 3×3×3 convolutions
  with 16, 32, 64, 128, 256 filters, 2×2×2 max pooling (51→25→12→6→3→1) and dense layers
  of 2048 and 1024 — have 3,801,505 parameters at 51³.
- :class:`LocalizationCNN` — Yang, Yabansu, Agrawal, Liao, Kalidindi, Choudhary,
  "Establishing structure-property localization linkages for elastic deformation of
  three-dimensional high contrast composites using deep learning approaches", Acta
  Mater. 166, 335 (2019): the 11×11×11 neighbourhood of a voxel, read as 11 channels
  (slices along the loading axis x1) of an 11×11 image, through two convolutions and two
  dense layers to the voxel's strain. Widths are options (the published ones are not in
  our sources); the defaults are sized for a 2-core CPU.
- :class:`LocalizationFieldCNN` — ours, not the papers': the same localization linkage as a fully
  convolutional 3-D CNN over the whole periodic element (dilated 3×3×3 convolutions with circular
  padding), every voxel's strain in one pass (docs/results/microstructures.md: it against the paper's net).
- :class:`HomogenizationFieldCNN` — ours, not the papers': effective C11 as the element's average of a local
  response, one number per 3×3×3 patch (C11 = ⟨σ11⟩ under a unit ε11), read by periodic convolutions that see
  the whole element after one strided step down (docs/results/microstructures.md: it against the paper's net).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class HomogenizationCNN(nn.Module):
    """(B, 1, N, N, N) voxels → (B, 1) effective stiffness, in units of ``output_scale``.

    Args:
        n_features: voxels per edge of the input volume (linked from the datamodule).
        channels: filters of the five convolution blocks.
        dense: widths of the two dense layers.
        batch_norm: batch normalisation after each convolution (``sync_batchnorm`` under DDP).
        output_scale: the output is multiplied by this (e.g. the hard phase's C11 in GPa), so
            the layers work at unit scale without a scaler fitted on the data.
    """

    def __init__(self, n_features: int = 51, channels: tuple[int, ...] = (16, 32, 64, 128, 256),
                 dense: tuple[int, ...] = (2048, 1024), batch_norm: bool = True, dropout: float = 0.0,
                 output_scale: float = 1.0):
        super().__init__()
        layers, width, size = [], 1, n_features
        for c in channels:
            layers += [nn.Conv3d(width, c, 3, padding=1)]
            layers += [nn.BatchNorm3d(c)] if batch_norm else []
            layers += [nn.ReLU(), nn.MaxPool3d(2, ceil_mode=False)]
            width, size = c, size // 2
        if size < 1:
            raise ValueError(f"{len(channels)} pooling blocks need at least {2 ** len(channels)} voxels per edge, "
                             f"got {n_features}")
        head, flat = [nn.Flatten()], width * size**3
        for d in dense:
            head += [nn.Linear(flat, d), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            flat = d
        head += [nn.Linear(flat, 1)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(*head)
        self.output_scale = output_scale

    def forward(self, x):
        return self.head(self.features(x)) * self.output_scale


class LocalizationCNN(nn.Module):
    """(B, k, k, k) neighbourhoods (k = ``n_features``) → (B, 1) local strain / applied strain.

    The k slices along x1 are the channels of a k×k image (2-D convolutions, Yang et al. 2019).

    Whole periodic elements, (B, 1, N1, N2, N3), give every voxel's prediction at once, (B·N1·N2·N3, 1) in
    the elements' row-major voxel order: the same function of each voxel's periodic k³ neighbourhood (equal
    to the per-neighbourhood pass, tested), computed as the 2-D net's convolutions over whole (x2, x3)
    planes, one k-channel plane per position along x1; the dense layers become convolutions over (x2, x3)
    windows. Overlapping neighbourhoods then share their convolutions and no neighbourhood is gathered
    (docs/results/microstructures.md: the speed measured). ``((B, 1, N1, N2, N3), voxels)`` with (B, V) flat
    voxel indices runs the dense layers only at those voxels: (B·V, 1).
    """

    def __init__(self, n_features: int = 11, channels: tuple[int, int] = (32, 64), kernel_size: int = 3,
                 dense: tuple[int, int] = (256, 128), batch_norm: bool = True):
        super().__init__()
        layers, width, size = [], n_features, n_features
        for c in channels:
            layers += [nn.Conv2d(width, c, kernel_size)]
            layers += [nn.BatchNorm2d(c)] if batch_norm else []
            layers += [nn.ReLU()]
            width, size = c, size - kernel_size + 1
        if size < 1:
            raise ValueError(f"neighbourhood {n_features} is too small for {len(channels)} {kernel_size}x{kernel_size}"
                             " convolutions")
        flat = width * size**2
        head = [nn.Flatten()]
        for d in dense:
            head += [nn.Linear(flat, d), nn.ReLU()]
            flat = d
        head += [nn.Linear(flat, 1)]
        self.layers = nn.Sequential(*layers, *head)
        self.n_features, self.final_size = n_features, size

    def forward(self, x):
        if isinstance(x, (tuple, list)):  # (elements (B, 1, N1, N2, N3), flat voxel indices (B, V))
            return self.strain_field(x[0][:, 0], x[1])
        if x.dim() == 5:
            return self.strain_field(x[:, 0]).reshape(-1, 1)
        return self.layers(x)

    def strain_field(self, micro: torch.Tensor, voxels: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N1, N2, N3) periodic elements → (B, N1, N2, N3): the prediction for every voxel.

        Each position along x1 becomes one k-channel image of the whole (x2, x3) plane (its k periodic slices
        along x1), and the 2-D net runs over those planes with circular padding placed so that each output reads
        the window the 2-D net reads for that voxel: batch norm's statistics then count each position of each
        element once, as over all voxels' maps in the per-neighbourhood pass.

        With ``voxels``, (B, V) flat indices into each element, the convolutions still run over the whole
        elements but the dense layers, nearly all of the work, only at those voxels: (B·V, 1), element by
        element, the same values as the whole field there.
        """
        k, (b, n1, n2, n3) = self.n_features, micro.shape
        slices = (torch.arange(n1, device=micro.device)[:, None] + torch.arange(k, device=micro.device) - k // 2) % n1
        x = micro[:, slices].reshape(b * n1, k, n2, n3).float()  # image i of element e: row e·N1 + i
        offset, mapped = 0, False  # offset: the windows' start, relative to the voxel
        for layer in self.layers:
            if isinstance(layer, nn.Conv2d):
                s = layer.kernel_size[0]
                left = (s - 1) // 2
                x = layer(F.pad(x, (left, s - 1 - left, left, s - 1 - left), mode="circular"))
                offset += left
            elif isinstance(layer, (nn.modules.batchnorm._BatchNorm, nn.ReLU)):  # BatchNorm2d or SyncBatchNorm
                x = layer(x)
            elif isinstance(layer, nn.Linear) and not mapped and voxels is not None:
                x = layer(_voxel_maps(x, n1, voxels, self.final_size, k // 2 - offset))
                mapped = True
            elif isinstance(layer, nn.Linear) and not mapped:  # reads each voxel's size×size map
                size, left = self.final_size, k // 2 - offset
                weight = layer.weight.reshape(layer.out_features, -1, size, size)
                x = F.conv2d(F.pad(x, (left, size - 1 - left) * 2, mode="circular"), weight, layer.bias)
                mapped = True
            elif isinstance(layer, nn.Linear):
                x = layer(x) if voxels is not None else F.conv2d(x, layer.weight[:, :, None, None], layer.bias)
            elif not isinstance(layer, nn.Flatten):  # never skip a layer silently
                raise TypeError(f"strain_field has no whole-element form of {type(layer).__name__}")
        return x if voxels is not None else x.reshape(b, n1, n2, n3)


class LocalizationFieldCNN(nn.Module):
    """(B, 1, N1, N2, N3) periodic elements → (B·N1·N2·N3, 1) local strain / applied strain, every voxel.

    3×3×3 convolutions with circular padding (the elements are periodic), one per entry of ``dilations`` with
    that dilation, each followed by batch normalisation and ReLU, then a 1×1×1 convolution to the strain. The
    receptive field, 1 + 2·Σ dilations voxels a side (35 for the default 1, 1, 2, 4, 8, 1), is set by the
    dilations, not by a neighbourhood cut out around each voxel: the strain at a voxel depends on the whole
    element (the first-order MKS kernel spans it), and every voxel is scored in one pass.
    ``((B, 1, N1, N2, N3), voxels)`` with (B, V) flat voxel indices gives those voxels' strains, (B·V, 1).

    Args:
        n_features: the datamodule's neighbourhood k (linked); the receptive field must cover it.
        channels: filters of every convolution.
        dilations: one convolution per entry, with that dilation.
        batch_norm: batch normalisation after each convolution (``sync_batchnorm`` under DDP).
    """

    def __init__(self, n_features: int = 11, channels: int = 16, dilations: tuple[int, ...] = (1, 1, 2, 4, 8, 1),
                 batch_norm: bool = True):
        super().__init__()
        self.receptive_field = 1 + 2 * sum(dilations)
        if self.receptive_field < n_features:
            raise ValueError(f"dilations {list(dilations)} see {self.receptive_field} voxels a side, fewer than the "
                             f"neighbourhood of {n_features}")
        layers = _periodic_dilated_convolutions(1, channels, dilations, batch_norm)
        self.layers = nn.Sequential(*layers, nn.Conv3d(channels if dilations else 1, 1, 1))
        self.n_features = n_features

    def forward(self, x):
        if isinstance(x, (tuple, list)):  # (elements (B, 1, N1, N2, N3), flat voxel indices (B, V))
            elements, voxels = x
            return self.layers(elements).flatten(1).gather(1, voxels).reshape(-1, 1)
        if x.dim() != 5:
            raise ValueError("LocalizationFieldCNN reads whole elements, (B, 1, N1, N2, N3), got shape "
                             f"{list(x.shape)}: set data.init_args.elements_per_batch")
        return self.layers(x).reshape(-1, 1)


class HomogenizationFieldCNN(nn.Module):
    """(B, 1, N, N, N) periodic elements → (B, 1) effective stiffness: the mean over the element of a local
    response, one number per ``stride``³ patch, in units of ``output_scale``.

    A 3×3×3 convolution with circular padding at full resolution, a ``stride``-voxel patch convolution down
    to (N / stride)³, then one 3×3×3 convolution per entry of ``dilations`` (circular padding, that dilation),
    then two 1×1×1 convolutions to one number per patch, averaged over the element. Every convolution is
    periodic, so shifting the element by whole patches leaves the answer unchanged. The coarse receptive field,
    1 + 2·Σ dilations patches a side, should cover the element (17 patches for 51³ and the defaults): the
    stiffness of a high-contrast composite depends on whether the hard phase percolates across it. ReLU after
    every convolution but the last; no batch normalisation by default (a batch's statistics mix elements
    whose volume fractions differ, and the average is what is predicted).

    Args:
        n_features: voxels per edge (linked from the datamodule); a multiple of ``stride``.
        stem_channels: filters of the full-resolution convolution. channels: filters of the rest.
        stride: edge of the patches of the strided convolution.
        dilations: one coarse convolution per entry, with that dilation.
        batch_norm: batch normalisation after each convolution but the last two.
        output_scale: the output is multiplied by this (e.g. 100 for GPa), so the layers work at unit scale.
    """

    def __init__(self, n_features: int = 51, stem_channels: int = 8, channels: int = 24, stride: int = 3,
                 dilations: tuple[int, ...] = (1, 2, 4, 1), batch_norm: bool = False, output_scale: float = 1.0):
        super().__init__()
        if n_features % stride:
            raise ValueError(f"an element of {n_features} voxels a side is not a whole number of {stride}-voxel "
                             "patches: the strided convolution would drop its last voxels and break periodicity")
        layers = _periodic_dilated_convolutions(1, stem_channels, (1,), batch_norm)
        layers += [nn.Conv3d(stem_channels, channels, stride, stride=stride)]
        layers += [nn.BatchNorm3d(channels)] if batch_norm else []
        layers += [nn.ReLU(), *_periodic_dilated_convolutions(channels, channels, dilations, batch_norm)]
        layers += [nn.Conv3d(channels, channels, 1), nn.ReLU(), nn.Conv3d(channels, 1, 1)]
        self.layers = nn.Sequential(*layers)
        self.receptive_field = 1 + 2 * sum(dilations)  # in patches
        self.output_scale = output_scale

    def forward(self, x):
        return self.layers(x).mean((1, 2, 3, 4))[:, None] * self.output_scale


def _periodic_dilated_convolutions(in_channels: int, channels: int, dilations: tuple[int, ...],
                                   batch_norm: bool) -> list[nn.Module]:
    """One 3×3×3 convolution with circular padding per entry of ``dilations`` (that dilation, ``channels``
    filters), each followed by batch normalisation if asked and ReLU: 1 + 2·Σ dilations voxels a side in view."""
    layers, width = [], in_channels
    for d in dilations:
        layers += [nn.Conv3d(width, channels, 3, padding=d, dilation=d, padding_mode="circular")]
        layers += [nn.BatchNorm3d(channels)] if batch_norm else []
        layers += [nn.ReLU()]
        width = channels
    return layers


def _voxel_maps(planes: torch.Tensor, n1: int, voxels: torch.Tensor, size: int, left: int) -> torch.Tensor:
    """The periodic size×size windows of ``planes`` (B·N1, C, N2, N3) at flat ``voxels`` (B, V) of the B
    elements, starting ``left`` before each voxel: (B·V, C·size·size), flattened as the 2-D net flattens."""
    n2, n3 = planes.shape[2:]
    element = torch.arange(len(voxels), device=voxels.device)[:, None].expand_as(voxels).reshape(-1)
    flat = voxels.reshape(-1)
    i, j, k = flat // (n2 * n3), flat // n3 % n2, flat % n3
    steps = torch.arange(size, device=voxels.device) - left
    jj, kk = (j[:, None] + steps) % n2, (k[:, None] + steps) % n3
    at = (((element * n1 + i)[:, None, None] * n2 + jj[:, :, None]) * n3 + kk[:, None, :]).reshape(-1)
    table = planes.permute(0, 2, 3, 1).reshape(-1, planes.shape[1])  # one row per position (index_select's
    maps = table.index_select(0, at).reshape(len(flat), size, size, -1)  # backward, index_add, is the fast one)
    return maps.permute(0, 3, 1, 2).reshape(len(flat), -1)
