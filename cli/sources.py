"""Transfer-learning sources the command line resolves before fitting, so the LightningModule only loads a file.

``init_from`` may name ``best:<dataset>`` (the finished run of the same net class on ``<dataset>`` with the
lowest ``test/mae`` in the run's MLflow store) or an MLflow model (``runs:/<run id>/model``,
``models:/<name>/<version>``): :func:`resolve_source` turns either into a local checkpoint file
(``PropertyRegressor.source_checkpoint``), keeping the URI as what the run names its source.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from lightning_modules.pretrained import PretrainedError


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


def is_mlflow_model(source: str) -> bool:
    """Whether ``source`` names an MLflow model (``runs:/``, ``models:/`` or another artifact URI), not a file."""
    return source.startswith(("runs:/", "models:/")) or "://" in source


def download_checkpoint(source: str, tracking_uri: str | None, workdir: Path) -> Path:
    """The checkpoint file of the MLflow model ``source``, downloaded into ``workdir``."""
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


def resolve_source(model, tracking_uri: str | None) -> None:
    """``model.hparams.init_from``: ``best:<dataset>`` becomes the chosen run's ``runs:/<id>/model``, and an MLflow
    model is downloaded (to a temporary folder of this process) as ``model.source_checkpoint``."""
    source = getattr(model, "hparams", {}).get("init_from")
    if not isinstance(source, str):
        return
    if source.startswith("best:"):
        source = model.hparams.init_from = best_run_model(type(model.net).__name__, source[len("best:"):],
                                                          tracking_uri)
    if is_mlflow_model(source):  # a checkpoint path is loaded as it is (lightning_modules/pretrained.py)
        folder = Path(tempfile.mkdtemp(prefix="transfer-source-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the weights are in the run's own checkpoints
        model.source_checkpoint = str(download_checkpoint(source, tracking_uri, folder))
