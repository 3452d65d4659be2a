"""The papers' architectures as pure ``torch.nn.Module``s (no training inside)."""

from lightning_modules.nets.cgcnn import CGCNN
from lightning_modules.nets.elemnet import ElemNet
from lightning_modules.nets.irnet import IRNet, stack_sizes
from lightning_modules.nets.microstructure_gan import MicrostructureGAN
from lightning_modules.nets.mve_cnn import (HomogenizationCNN, HomogenizationFieldCNN, LocalizationCNN,
                                            LocalizationFieldCNN)
from lightning_modules.nets.omnet import OMNet
from lightning_modules.nets.padnet import PADNet
from lightning_modules.nets.roost import Roost

__all__ = ["CGCNN", "ElemNet", "HomogenizationCNN", "HomogenizationFieldCNN", "IRNet", "LocalizationCNN",
           "LocalizationFieldCNN", "MicrostructureGAN", "OMNet", "PADNet", "Roost", "stack_sizes"]
