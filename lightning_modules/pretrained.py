"""Start a net from weights trained on another dataset: the dissertation's transfer learning (ch. 5).

Jha et al., Nat. Commun. 10, 5316 (2019): ElemNet trained from scratch on OQMD ("OQMD-SC") is the
initialisation, and every layer is fine-tuned on the smaller target set. ``init_from`` names the
source as

- a Lightning checkpoint path (``outputs/elemnet/<run>/checkpoints/best-….ckpt``),
- an MLflow model URI (``runs:/<run id>/model``, ``models:/<name>/<version>``), or
- ``best:<dataset>``: the finished run of the same net class on ``<dataset>`` (e.g.
  ``best:oqmd_formation_enthalpy``) with the lowest ``test/mae`` in this MLflow store; ``best<k>:<dataset>``
  the k best (or as many as there are), or
- several of these, comma-separated: an ensemble's members start from them in turn (member i from source
  i mod n). Fine-tunings of different source nets disagree more than fine-tunings of one (which differ only
  by their bootstrap weights), and their average is the better for it.

The LightningModule loads a checkpoint file; the command line resolves what is not one (``best:``, MLflow
URIs; :mod:`cli.sources`) before fitting. The source must have the same architecture and input width:
every tensor of the net is replaced (strict), and a mismatch is an error naming the source and the first
differing tensor. Layers without weights may differ (an ElemNet trained without dropout initialises one with dropout).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class PretrainedError(RuntimeError):
    """The pretrained source cannot initialise this net (missing, or another architecture)."""


def _matched_by_order(weights: dict, own: dict) -> dict:
    """``weights`` renamed to this net's tensor names when only the names differ: the same tensors, shapes and
    order, numbered differently because layers without weights (dropout) sit elsewhere (an ElemNet trained
    without dropout initialises one with Table 3.1's dropout, and the reverse). Otherwise unchanged."""
    if set(weights) == set(own) or len(weights) != len(own):
        return weights
    pairs = list(zip(weights.items(), own.items()))
    if all(w.shape == o.shape and a.rsplit(".", 1)[-1] == b.rsplit(".", 1)[-1] for (a, w), (b, o) in pairs):
        return {b: w for (_, w), (b, _) in pairs}
    return weights


def _state(source: str) -> tuple[Path, dict]:
    path = Path(source)
    if not path.is_file():
        raise PretrainedError(f"pretrained checkpoint {path} does not exist")
    return path, torch.load(path, map_location="cpu", weights_only=True).get("state_dict", {})


def _net_tensors(state: dict) -> dict:
    return {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}


def load_net_weights(nets: list[nn.Module], source: str) -> bool:
    """Replace every tensor of each net (one architecture: a net, or an ensemble's members) with the
    ``net.*`` tensors of the checkpoint file ``source``, read once. A source that is itself an ensemble of
    as many members (``members.<k>.*``: an active-learning round warm-starting the next) gives each member
    its own weights; several files (comma-separated) give member i the net of file i mod n. Returns whether
    every net got its own weights (False: some start as one net)."""
    files = source.split(",")
    if len(files) > 1:
        if len(nets) < len(files):
            raise PretrainedError(f"{len(files)} pretrained sources need an ensemble of at least as many members "
                                  f"(uncertainty: ensemble, ensemble_size >= {len(files)}); this model has {len(nets)}")
        weights = [(path, _net_tensors(state)) for path, state in map(_state, files)]  # each file read once
        for i, net in enumerate(nets):
            path, tensors = weights[i % len(files)]
            _load(net, tensors, files[i % len(files)], path)
        return len(nets) == len(files)
    path, state = _state(source)
    members = {k.split(".")[1] for k in state if k.startswith("members.")}
    if len(nets) > 1 and members == {str(i) for i in range(len(nets))}:
        for i, net in enumerate(nets):
            prefix = f"members.{i}."
            _load(net, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, source, path)
        return True
    weights = _net_tensors(state)
    for net in nets:
        _load(net, weights, source, path)
    return False


def _load(net: nn.Module, weights: dict, source: str, path: Path) -> None:
    """Load ``weights`` (named as the net's own tensors) into ``net`` strictly, or say how they differ."""
    own = net.state_dict()
    weights = _matched_by_order(weights, own)
    missing = sorted(set(own) - set(weights))
    if missing or set(weights) - set(own):
        extra = sorted(set(weights) - set(own))
        raise PretrainedError(f"pretrained {source} ({path.name}) is another architecture than {type(net).__name__}: "
                              f"missing {missing[:3]}, unexpected {extra[:3]}")
    for name, tensor in own.items():
        if weights[name].shape != tensor.shape:
            raise PretrainedError(f"pretrained {source}: tensor {name} has shape {tuple(weights[name].shape)}, this "
                                  f"net's has {tuple(tensor.shape)} (another input width or layer size)")
    net.load_state_dict(weights)
