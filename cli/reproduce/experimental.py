"""``make reproduce TABLE=experimental [OPTS='--tasks elemnet']``: Table 5.4 of the dissertation.

Every trained model of the task's net in this MLflow store, evaluated on the experimental formation
enthalpies (SSUB, Jha et al., Nat. Commun. 10, 5316 (2019), Table 5.4). Models are grouped by the
dataset they were trained on and by how: from scratch (SC) or fine-tuned from another run (TL, the
``transfer.source`` tag; learning-rate-0 "applied" runs are left out, they are the transfer table's
middle column). A model trained on DFT data is scored on every cleaned SSUB composition; a model
trained on SSUB itself is scored by its own held-out test fold (as the paper does). Models that predict
by a mean (MC dropout, ensembles) have rows of their own. Each cell is the
mean ± std of the MAE over the group's models, with their count; nothing is trained here, so train
first (``make train TASK=elemnet``, ``make reproduce TABLE=transfer``, ``--data.init_args.dataset=mp_e_form`` ...).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import yaml

from cli.configs import task_configs
from cli.reproduce.cells import mean_std

# Table 5.4: training dataset -> (scratch, transfer) MAE on the experimental data, eV/atom
PUBLISHED = {"oqmd_formation_enthalpy": ("0.1354 ± 0.0000", "—"), "jarvis": ("0.1911 ± 0.0042", "0.1487 ± 0.0027"),
             "mp_e_form": ("0.1619 ± 0.0020", "0.1613 ± 0.0016"), "ssub": ("0.1299 ± 0.0136", "0.0642 ± 0.0061")}
EXPERIMENTAL = "ssub"


def key_parts(opts: argparse.Namespace, extra: list[str]) -> list[str]:
    return [*opts.tasks, *extra]


def probe(opts: argparse.Namespace, extra: list[str]) -> list[str]:
    return task_configs(opts.tasks[0], opts.profile) + extra + [f"--data.init_args.dataset={EXPERIMENTAL}",
                                                                "--data.init_args.split=random",
                                                                "--data.init_args.skip_bad_rows=true"]


def net_class(task: str) -> str:
    config = yaml.safe_load(Path(task_configs(task)[-1].split("=", 1)[1]).read_text())
    return config["model"]["init_args"]["net"]["class_path"].rsplit(".", 1)[1]


def experimental_compositions():
    """Every cleaned, de-duplicated SSUB composition (element fractions) and its measured enthalpy."""
    from datamodules.composition import CompositionDataModule

    dm = CompositionDataModule(dataset=EXPERIMENTAL, split="random", skip_bad_rows=True)
    dm.prepare_data()
    dm.setup("fit")
    parts = dm.compositions.values()
    return np.concatenate([f for f, _ in parts]), np.concatenate([t for _, t in parts])


def score_on(run_id: str, tracking_uri: str, fractions: np.ndarray, targets: np.ndarray) -> float:
    """MAE of the run's logged model on the given compositions."""
    import torch

    from lightning_modules.composition_model import load_composition_model
    from datamodules.composition import featurize
    from cli.sources import download_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        module, dm = load_composition_model(download_checkpoint(f"runs:/{run_id}/model", tracking_uri, Path(tmp)))
    x = dm.transform(torch.from_numpy(featurize(fractions, dm.hparams.features).astype(np.float32)))
    with torch.no_grad():
        pred = torch.cat([module.predict_with_std(chunk)[0] for chunk in x.split(8192)]).squeeze(1).double().numpy()
    return float(np.abs(pred - targets).mean())


def prediction(params: dict[str, str]) -> str:
    """How a run's model predicts: '' for one pass, else the predictive mean it was scored by."""
    kind = params.get("uncertainty", "none")
    return {"none": "", "mc_dropout": f"mean of {params.get('mc_samples', '30')} dropout-on passes",
            "ensemble": f"mean of {params.get('ensemble_size', '5')} ensemble members"}.get(kind, kind)


def experimental_table(opts: argparse.Namespace, extra: list[str], cells) -> str:
    client, uri = cells.client, cells.client.tracking_uri
    fractions, targets = experimental_compositions()
    net = net_class(opts.tasks[0])
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"tags.net = '{net}' and attributes.status = 'FINISHED'", max_results=5000)
    groups: dict[tuple[str, str], list[float]] = {}
    from cli.sources import has_model

    for run in runs:
        params, tags = run.data.params, run.data.tags
        if "test/mae" not in run.data.metrics or "dataset" not in params or float(params.get("lr", 1)) == 0:
            continue
        if not has_model(client, run.info.run_id):
            continue
        arm = "TL" if tags.get("transfer.source") else "SC"
        dataset = params["dataset"]
        mae = (run.data.metrics["test/mae"] if dataset == EXPERIMENTAL  # its held-out fold
               else score_on(run.info.run_id, uri, fractions, targets))
        groups.setdefault((prediction(params), dataset, arm), []).append(mae)
    lines = [f"{net} models in this MLflow store scored on the experimental formation enthalpies ({EXPERIMENTAL}: "
             f"{len(targets):,} distinct compositions; the paper's 1,963 rows keep duplicates). MAE in eV/atom, "
             "mean ± std over the models of a group (n: how many); models trained on the experimental data are "
             "scored on their own held-out folds. Published: Table 5.4 (10-fold CV models, converged on a GPU).", "",
             "| training dataset | scratch (ours) | n | transfer (ours) | n | scratch (published) | transfer (published) |",
             "|---|---|---|---|---|---|---|"]
    for kind, dataset in sorted({(k, d) for k, d, _ in groups}, key=lambda kd: (kd[1] == EXPERIMENTAL, kd[1], kd[0])):
        cols = []
        label = dataset + (f", {kind}" if kind else "")  # how the models predict (ElemNet: see predict_with_std)
        for arm in ("SC", "TL"):
            mae = np.array(groups.get((kind, dataset, arm), []))
            cols += [mean_std(mae) if len(mae) else "—", str(len(mae))]
            if len(mae):
                client.log_metric(cells.parent_id, f"{label.replace(', ', '/').replace(' ', '_')}/{arm}/experimental_mae_mean",
                                  float(mae.mean()))
        published = PUBLISHED.get(dataset, ("—", "—"))
        lines.append(f"| {label} | {' | '.join(cols)} | {published[0]} | {published[1]} |")
    if not groups:
        lines.append(f"| (no finished {net} run with a logged model: `make train TASK={opts.tasks[0]}` first) "
                     "| — | 0 | — | 0 | — | — |")
    return "\n".join(lines) + "\n"
