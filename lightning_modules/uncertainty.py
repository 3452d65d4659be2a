"""Predictive uncertainty for any regression net: MC dropout and deep ensembles.

- ``mc_dropout`` (Gal & Ghahramani, ICML 2016): the net's dropout layers stay on at prediction time;
  the mean and standard deviation of ``mc_samples`` stochastic passes are the prediction and its
  uncertainty. Needs a net with dropout (ElemNet has four dropout layers; IRNet has none).
- ``ensemble`` (Lakshminarayanan et al., NeurIPS 2017): ``ensemble_size`` copies of the net, each
  re-initialised from its own seed and trained on the same batches with its own loss; the mean and
  standard deviation over members. Embedding tables are kept as configured (they may hold a published
  table such as mat2vec), every other layer with ``reset_parameters`` is drawn anew. Transferred from one
  source net (``init_from``), every member starts as that net, and each then weighs the training rows by its
  own Poisson(1) draws (an online bootstrap; :class:`~lightning_modules.regression.PropertyRegressor`), or
  they would stay one net; from an ensemble of as many members, each goes on from its own weights.

Scores of a Gaussian predictive distribution N(mean, std²): negative log likelihood, and the coverage
of the central 68 % and 95 % intervals (mean ± 0.994 std, ± 1.960 std), which a calibrated model
matches; :func:`calibration_curve` gives observed against expected coverage for every interval.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn


def ensemble_members(net: nn.Module, size: int, seed: int = 0) -> nn.ModuleList:
    """``net`` itself and ``size - 1`` re-initialised copies (seeds ``seed + 1``, ``seed + 2``, ...)."""
    if size < 2:
        raise ValueError(f"an ensemble needs at least 2 members, not {size}")
    members = [net]
    for k in range(1, size):
        member = copy.deepcopy(net)
        with torch.random.fork_rng():
            torch.manual_seed(seed + k)
            for module in member.modules():
                if hasattr(module, "reset_parameters") and not isinstance(module, nn.Embedding):
                    module.reset_parameters()
        members.append(member)
    return nn.ModuleList(members)


def dropout_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]


def _plain(module, x: torch.Tensor) -> tuple[torch.Tensor, None]:
    return module.net(x), None


def mc_dropout_samples(net: nn.Module, x: torch.Tensor, samples: int) -> torch.Tensor:
    """``samples`` passes of ``net`` over ``x`` with its dropout layers on (the rest as they are), stacked."""
    layers = dropout_layers(net)
    modes = [m.training for m in layers]
    try:
        for m in layers:
            m.train()
        return torch.stack([net(x) for _ in range(samples)])
    finally:
        for m, mode in zip(layers, modes):
            m.train(mode)


def _mc_dropout(module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    samples = mc_dropout_samples(module.net, x, module.hparams.mc_samples)
    return samples.mean(0), samples.std(0)


def _ensemble(module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    preds = torch.stack([member(x) for member in module.members])
    return preds.mean(0), preds.std(0)


#: uncertainty kind -> (module, x) -> (mean, std or None), used in eval mode (test, predict)
PREDICTIVE: dict[str, Callable] = {"none": _plain, "mc_dropout": _mc_dropout, "ensemble": _ensemble}

Z68, Z95 = 0.994458, 1.959964  # half-widths (in std) of the central 68 % and 95 % intervals of a normal


def gaussian_scores(mean: torch.Tensor, std: torch.Tensor, true: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean negative log likelihood (nats), interval coverages and the mean predicted std."""
    std = std.clamp_min(1e-6)
    z = (true - mean).abs() / std
    nll = 0.5 * math.log(2 * math.pi) + std.log() + 0.5 * z**2
    return {"nll": nll.mean(), "coverage_68": (z <= Z68).float().mean(), "coverage_95": (z <= Z95).float().mean(),
            "std_mean": std.mean()}


def calibration_curve(mean, std, true, levels: int = 19) -> tuple[torch.Tensor, torch.Tensor]:
    """(expected, observed) coverage of central intervals at ``levels`` probabilities in (0, 1)."""
    expected = torch.linspace(0.05, 0.95, levels, dtype=torch.float64)
    z = ((true - mean).abs() / std.clamp_min(1e-6)).double()
    half_widths = torch.special.ndtri((1 + expected) / 2)
    observed = (z[None, :] <= half_widths[:, None]).double().mean(1)
    return expected, observed
