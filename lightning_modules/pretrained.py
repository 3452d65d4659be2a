"""Start a net from weights trained on another dataset: the dissertation's transfer learning (ch. 5).

Jha et al., Nat. Commun. 10, 5316 (2019): ElemNet trained from scratch on OQMD ("OQMD-SC") is the
initialisation, and every layer is fine-tuned on the smaller target set. ``init_from`` names the
source as

- a Lightning checkpoint path (``outputs/elemnet/<run>/checkpoints/best-….ckpt``),
- an MLflow model URI (``runs:/<run id>/model``, ``models:/<name>/<version>``), or
- ``best:<dataset>``: the finished run of the same net class on ``<dataset>`` (e.g.
  ``best:oqmd_formation_enthalpy``) with the lowest ``test/mae`` in this MLflow store.

The source must have the same architecture and input width: every tensor of the net is
replaced (strict), and a mismatch is an error naming the source and the first differing tensor. Layers
without weights may differ (an ElemNet trained without dropout initialises one with dropout).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn


class PretrainedError(RuntimeError):
    """The pretrained source cannot initialise this net (missing, or another architecture)."""


def has_model(client, run_id: str) -> bool:
    """Whether the run logged an MLflow model under ``model``."""
    return any(a.path == "model" for a in client.list_artifacts(run_id))


def best_run_model(net_class: str, dataset: str, tracking_uri: str | None) -> str:
    """``runs:/<id>/model`` of the finished ``net_class`` run on ``dataset`` with the lowest test MAE."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"tags.net = '{net_class}' and params.dataset = '{dataset}' "
                              "and attributes.status = 'FINISHED'", order_by=["metrics.`test/mae` ASC"]) \
        if experiments else []
    runs = [r for r in runs if "test/mae" in r.data.metrics]
    for run in runs:
        if has_model(client, run.info.run_id):
            return f"runs:/{run.info.run_id}/model"
    raise PretrainedError(
        f"no finished {net_class} run on {dataset} with a logged model in MLflow store {tracking_uri}: train one "
        f"first (`make train TASK={net_class.lower()}`, or with PROFILE=paper on a GPU), or pass "
        f"--model.init_args.init_from=<checkpoint path | runs:/<run id>/model>")


def resolve_checkpoint(source: str, tracking_uri: str | None, workdir: Path) -> Path:
    """A local checkpoint file for ``source`` (downloaded into ``workdir`` when it is an MLflow model)."""
    if source.startswith(("runs:/", "models:/")) or "://" in source:
        import mlflow

        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(workdir),
                                                             tracking_uri=tracking_uri))
        except Exception as err:  # noqa: BLE001 - say which source failed, keep the cause
            raise PretrainedError(f"cannot download pretrained model {source} from {tracking_uri}: {err}") from err
        found = sorted(local.rglob("*.ckpt")) if local.is_dir() else [local]
        if not found:
            raise PretrainedError(f"pretrained model {source} holds no checkpoint (*.ckpt)")
        return found[0]
    path = Path(source)
    if not path.is_file():
        raise PretrainedError(f"pretrained checkpoint {path} does not exist")
    return path


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


def load_net_weights(nets: list[nn.Module], source: str, tracking_uri: str | None = None) -> str:
    """Replace every tensor of each net (one architecture: a net, or an ensemble's members) with the
    source's ``net.*`` tensors, read once; returns the source as a path or MLflow URI (``best:…`` resolved
    to the run it chose)."""
    net = nets[0]
    if source.startswith("best:"):
        source = best_run_model(type(net).__name__, source[len("best:"):], tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        path = resolve_checkpoint(source, tracking_uri, Path(tmp))
        state = torch.load(path, map_location="cpu", weights_only=True).get("state_dict", {})
    weights = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
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
    for each in nets:
        each.load_state_dict(weights)
    return source
