"""Transfer-learning sources the command line resolves before fitting, so the LightningModule only loads a file.

``init_from`` may name ``best:<dataset>`` (the finished run of the same net class on ``<dataset>`` with the
lowest ``test/mae`` in the run's MLflow store), ``best<k>:<dataset>`` (the k best such runs, or as many as the
store has), an MLflow model (``runs:/<run id>/model``, ``models:/<name>/<version>``) or a checkpoint file, or
several of these separated by commas (an ensemble's members then start from the sources in turn):
:func:`resolve_source` turns each into a local checkpoint file (``PropertyRegressor.source_checkpoint``), keeping
the URIs as what the run names its sources.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from pathlib import Path

from lightning_modules.pretrained import PretrainedError


def has_model(client, run_id: str) -> bool:
    """Whether the run logged an MLflow model under ``model``."""
    return any(a.path == "model" for a in client.list_artifacts(run_id))


#: ``best:<dataset>`` or ``best<k>:<dataset>``
BEST = re.compile(r"best(\d*):(.+)")


def best_run_models(net_class: str, dataset: str, tracking_uri: str | None, k: int = 1) -> list[str]:
    """``runs:/<id>/model`` of the (up to) ``k`` finished ``net_class`` runs on ``dataset`` with the lowest test
    MAE, the best first; an error when there is none."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"tags.net = '{net_class}' and params.dataset = '{dataset}' "
                              "and attributes.status = 'FINISHED'", order_by=["metrics.`test/mae` ASC"]) \
        if experiments else []
    runs = [r for r in runs if "test/mae" in r.data.metrics]
    found = [f"runs:/{run.info.run_id}/model" for run in runs if has_model(client, run.info.run_id)][:k]
    if found:
        return found
    raise PretrainedError(
        f"no finished {net_class} run on {dataset} with a logged model in MLflow store {tracking_uri}: train one "
        f"first (`make train TASK={net_class.lower()}`, or with PROFILE=paper on a GPU), or pass "
        f"--model.init_args.init_from=<checkpoint path | runs:/<run id>/model>")


def expand_sources(init_from: str, net_class: str, tracking_uri: str | None) -> str:
    """``init_from`` with each ``best:`` / ``best<k>:`` part replaced by the runs it names now (comma-separated)."""
    parts = []
    for part in (p.strip() for p in init_from.split(",")):
        best = BEST.fullmatch(part)
        parts += best_run_models(net_class, best[2], tracking_uri, int(best[1] or 1)) if best else [part]
    return ",".join(dict.fromkeys(parts))


def is_mlflow_model(source: str) -> bool:
    """Whether ``source`` names an MLflow model (``runs:/``, ``models:/`` or another artifact URI), not a file."""
    return source.startswith(("runs:/", "models:/")) or "://" in source


def download_checkpoint(source: str, tracking_uri: str | None, workdir: Path) -> Path:
    """The checkpoint file of the MLflow model ``source``, downloaded into ``workdir``."""
    import mlflow

    workdir.mkdir(parents=True, exist_ok=True)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(workdir),
                                                         tracking_uri=tracking_uri))
    except Exception as err:  # noqa: BLE001 - say which source failed, keep the cause
        raise PretrainedError(f"cannot download pretrained model {source} from {tracking_uri}: {err}") from err
    found = sorted(local.rglob("*.ckpt")) if local.is_dir() else [local]
    if not found:
        raise PretrainedError(f"pretrained model {source} holds no checkpoint (*.ckpt)")
    return found[0]


def resolve_source(model, tracking_uri: str | None) -> None:
    """``model.hparams.init_from``: ``best:<dataset>`` (``best<k>:``) becomes the chosen runs' ``runs:/<id>/model``,
    and each MLflow model is downloaded (to a temporary folder of this process); ``model.source_checkpoint`` lists
    the local files (comma-separated, as ``init_from``)."""
    source = getattr(model, "hparams", {}).get("init_from")
    if not isinstance(source, str):
        return
    source = model.hparams.init_from = expand_sources(source, type(model.net).__name__, tracking_uri)
    files = source.split(",")
    if any(is_mlflow_model(s) for s in files):  # checkpoint paths are loaded as they are (lightning_modules/pretrained.py)
        folder = Path(tempfile.mkdtemp(prefix="transfer-source-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the weights are in the run's own checkpoints
        files = [str(download_checkpoint(s, tracking_uri, folder / str(i))) if is_mlflow_model(s) else s
                 for i, s in enumerate(files)]
        model.source_checkpoint = ",".join(files)
