"""The papers' architectures as pure ``torch.nn.Module``s (no training inside)."""

from lightning_modules.nets.elemnet import ElemNet
from lightning_modules.nets.irnet import IRNet, stack_sizes

__all__ = ["ElemNet", "IRNet", "stack_sizes"]
