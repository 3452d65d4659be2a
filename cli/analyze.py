"""``make analyze TASK=elemnet CKPT=<ckpt>[,<label>=<ckpt>...]``: what the hidden layers learned.

The dissertation's activation analysis (3.3.8, 5.3.8; Fig. 3.6, 5.8, 5.9) for any composition model:

- **PCA of the activations** of chosen hidden layers (``--layers``; the k-th ReLU of the net is hidden
  layer k) for the single elements, and for the AB compounds of the group I and II metals with S and Cl
  (Li2S, LiCl, MgS, MgCl2, ...): does a layer separate chemistry (group, anion) it was never told?
- **Dropout off vs on** (``--shift``, SSUB by default): for nets with dropout, the MAE and the slope
  against the targets of the dropout-off prediction and of the mean of 30 dropout-on passes (ElemNet's
  dropout-off output shrinks towards zero; see ``PropertyRegressor.predict_with_std``).
- **Metal vs non-metal from the activations**: logistic regression on each hidden layer's activations
  (standardised), scored by the ROC AUC over ``--folds`` stratified folds, on ``--samples``
  compositions of ``mp_is_metal`` (crabnet wheel, Materials Project; compositions whose polymorphs
  disagree are left out). Layer 0 is the model's input. Several checkpoints (scratch, transfer) give
  one curve each, as in Figure 5.9.

Everything goes into one MLflow run (experiment ``analysis``): ``plots/pca_*.png``,
``plots/metal_auc.png``, ``analysis.md`` (the AUC table, and the dropout table with ``--shift``) and a
metric ``auc/<label>/layer<k>`` per layer.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from callbacks.mlflow_run import experiment_id

GROUP_I, GROUP_II = ("Li", "Na", "K", "Rb", "Cs"), ("Be", "Mg", "Ca", "Sr", "Ba")


def ab_compounds() -> tuple[list[str], list[str], list[str]]:
    """Charge-balanced binaries of the group I/II metals with S and Cl: formulas, metal group, anion."""
    formulas, groups, anions = [], [], []
    for metal in GROUP_I + GROUP_II:
        one = metal in GROUP_I
        for anion, formula in (("S", f"{metal}2S" if one else f"{metal}S"), ("Cl", f"{metal}Cl" if one else f"{metal}Cl2")):
            formulas.append(formula)
            groups.append("group I" if one else "group II")
            anions.append(anion)
    return formulas, groups, anions


@torch.no_grad()
def hidden_activations(net: nn.Module, x: torch.Tensor, batch: int = 4096) -> list[np.ndarray]:
    """The output of every ReLU of ``net`` (hidden layers 1..L, in forward order) for inputs ``x``."""
    outputs: list[list[torch.Tensor]] = []
    order: dict[int, int] = {}

    def hook(module, _inputs, output):
        k = order.setdefault(id(module), len(order))
        while len(outputs) <= k:
            outputs.append([])
        outputs[k].append(output.detach().reshape(output.shape[0], -1).float().cpu())

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    if not handles:
        raise ValueError(f"{type(net).__name__} has no nn.ReLU layers to read activations from")
    try:
        net.eval()
        for chunk in x.split(batch):
            net(chunk)
    finally:
        for h in handles:
            h.remove()
    return [torch.cat(parts).numpy() for parts in outputs]


def metal_labels(samples: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``samples`` compositions of mp_is_metal with one label for all their polymorphs, and the labels."""
    from datamodules.sources.readers import read_csv
    from datamodules.sources.registry import dataset_files
    from materials.composition import composition_keys, parse_compositions

    path = dataset_files("mp_is_metal")["all"]
    table = read_csv(path, skip_bad=True)
    parsed = parse_compositions(table.formulas, str(path), rows=table.rows, skip_bad=True)
    formulas = np.array(table.formulas, dtype=object)[parsed.ok]
    labels = table.targets[parsed.ok]
    keys = composition_keys(parsed.fractions)
    lo, hi = np.full(keys.max() + 1, np.inf), np.full(keys.max() + 1, -np.inf)
    np.minimum.at(lo, keys, labels)
    np.maximum.at(hi, keys, labels)
    _, first = np.unique(keys, return_index=True)
    first = first[lo[keys[first]] == hi[keys[first]]]  # unanimous compositions, one row each
    chosen = np.random.default_rng(seed).permutation(first)[:samples]
    return list(formulas[chosen]), labels[chosen].astype(int)


def dropout_shift(module, x: torch.Tensor, y: torch.Tensor, samples: int = 30, seed: int = 0) -> dict[str, float]:
    """Dropout-off prediction against the mean of ``samples`` dropout-on passes, on targets ``y``: the MAE and
    the least-squares slope against ``y`` of each (1 = no shrinkage). Empty for a net without dropout."""
    from lightning_modules.uncertainty import dropout_layers, mc_dropout_samples

    if not dropout_layers(module.net):
        return {}
    torch.manual_seed(seed)
    with torch.no_grad():
        module.net.eval()
        off = module.net(x).reshape(-1).double()
        mean = mc_dropout_samples(module.net, x, samples).mean(0).reshape(-1).double()
    y = y.reshape(-1).double()
    centred = y - y.mean()

    def slope(p):
        return float((centred * (p - p.mean())).sum() / (centred * centred).sum())

    return {"mae_off": float((off - y).abs().mean()), "mae_mean": float((mean - y).abs().mean()),
            "slope_off": slope(off), "slope_mean": slope(mean)}


def layer_auc(features: np.ndarray, labels: np.ndarray, folds: int, seed: int = 0) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(model, features, labels, cv=cv, scoring="roc_auc").mean())


def pca_plot(points: dict[str, np.ndarray], colours: list[str], texts: list[str], title: str, path: Path) -> Path:
    """One panel per layer: the first two principal components, points labelled and coloured by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    classes = sorted(set(colours))
    fig, axes = plt.subplots(1, len(points), figsize=(4.2 * len(points), 4), squeeze=False)
    for ax, (name, acts) in zip(axes[0], points.items()):
        xy = PCA(2).fit_transform(acts) if acts.shape[1] > 1 and np.ptp(acts, axis=0).any() else np.zeros((len(acts), 2))
        for c in classes:
            sel = [i for i, col in enumerate(colours) if col == c]
            ax.scatter(xy[sel, 0], xy[sel, 1], s=14, label=c)
        for i, text in enumerate(texts):
            ax.annotate(text, xy[i], fontsize=6, alpha=0.8)
        ax.set(title=name, xlabel="PC 1", ylabel="PC 2")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def auc_plot(curves: dict[str, list[float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, aucs in curves.items():
        ax.plot(range(len(aucs)), aucs, "o-", label=label)
    ax.set(xlabel="hidden layer (0 = input)", ylabel="ROC AUC, metal vs non-metal",
           title="logistic regression on layer activations")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def element_group(symbol: str) -> str:
    from pymatgen.core import Element

    el = Element(symbol)
    for kind in ("alkali", "alkaline", "rare_earth", "actinoid", "transition_metal", "metalloid", "halogen", "noble_gas",
                 "chalcogen"):
        if getattr(el, f"is_{kind}"):
            return kind.replace("_", " ")
    return "post-transition metal" if el.is_post_transition_metal else "other non-metal"


def parse_models(spec: str) -> dict[str, str]:
    """``a.ckpt,transfer=b.ckpt`` -> {label: checkpoint}; an unlabelled one is named by its file."""
    from cli.runs import model_checkpoint

    models = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        # checkpoint names hold "=" themselves (best-epoch=003.ckpt): a label only when the whole is no file
        whole = Path(item).is_file() or item == "latest" or item.startswith(("runs:/", "models:/"))
        name = (Path(item).parent.parent.name or item) if Path(item).is_file() else item
        label, _, path = (name, "", item) if whole else item.partition("=")
        path = str(model_checkpoint(path, "elemnet"))  # latest, runs:/…, models:/… or a path
        if not Path(path).is_file():
            raise SystemExit(f"checkpoint {path} does not exist")
        models[label] = path
    if not models:
        raise SystemExit("give at least one checkpoint: CKPT=outputs/elemnet/<run>/checkpoints/best-….ckpt")
    return models


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    import mlflow

    from lightning_modules.composition_model import load_composition_model
    from materials.elements import ELEMNET_ELEMENTS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="checkpoint[,label=checkpoint...]")
    ap.add_argument("--task", default="elemnet", help="names the MLflow run")
    ap.add_argument("--layers", default="1,4,7,10,13,16", help="hidden layers for the PCA plots")
    ap.add_argument("--samples", type=int, default=4000, help="mp_is_metal compositions for the AUC")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--shift", default="ssub", help="dataset on which dropout-off and dropout-on-mean predictions "
                    "are compared (every parsable row; 'none' skips)")
    args = ap.parse_args(argv)
    models = parse_models(args.model)
    pca_layers = [int(k) for k in args.layers.split(",")]
    ab, ab_groups, ab_anions = ab_compounds()
    metal_formulas, metal_y = metal_labels(args.samples)
    client = mlflow.MlflowClient()
    run_id = client.create_run(experiment_id(client, "analysis"), run_name=f"analyze-{args.task}").info.run_id
    curves: dict[str, list[float]] = {}
    shifts: dict[str, dict[str, float]] = {}
    if args.shift != "none":
        from datamodules.sources.readers import read_table
        from datamodules.sources.registry import dataset_files

        path = dataset_files(args.shift)["all"]
        shift_table = read_table(path, skip_bad=True)
    try:
        for key, value in (("models", args.model), ("samples", args.samples), ("folds", args.folds)):
            client.log_param(run_id, key, str(value)[:6000])
        with tempfile.TemporaryDirectory() as tmp:
            plots = []
            for label, ckpt in models.items():
                module, datamodule = load_composition_model(ckpt)
                acts = {}
                for name, formulas in (("elements", list(ELEMNET_ELEMENTS)), ("ab", ab), ("metal", metal_formulas)):
                    x, _ = datamodule.featurize_formulas(formulas)
                    acts[name] = [x.numpy()] + hidden_activations(module.net, x)
                layers = [k for k in pca_layers if k < len(acts["elements"])]
                plots.append(pca_plot({f"layer {k}": acts["elements"][k] for k in layers},
                                      [element_group(e) for e in ELEMNET_ELEMENTS], list(ELEMNET_ELEMENTS),
                                      f"{label}: single elements", Path(tmp) / f"pca_elements_{label}.png"))
                plots.append(pca_plot({f"layer {k}": acts["ab"][k] for k in layers},
                                      [f"{g}, {a}" for g, a in zip(ab_groups, ab_anions)], ab,
                                      f"{label}: group I/II with S, Cl", Path(tmp) / f"pca_ab_{label}.png"))
                if args.shift != "none":
                    x, parsed = datamodule.featurize_formulas(shift_table.formulas, skip_bad=True, source=str(path))
                    y = torch.as_tensor(np.asarray(shift_table.targets, dtype=np.float32)[parsed.ok])
                    if shift := dropout_shift(module, x, y):
                        shifts[label] = {"n": float(len(y)), **shift}
                        for key, value in shift.items():
                            client.log_metric(run_id, f"shift/{label}/{key}", value)
                curves[label] = []
                for k, features in enumerate(acts["metal"]):
                    auc = layer_auc(features, metal_y, args.folds)
                    curves[label].append(auc)
                    client.log_metric(run_id, f"auc/{label}/layer{k}", auc)
                    print(f"{label} layer {k:2d}: metal AUC {auc:.3f}", file=sys.stderr)
            plots.append(auc_plot(curves, Path(tmp) / "metal_auc.png"))
            for path in plots:
                client.log_artifact(run_id, str(path), "plots")
            rows = ["| layer | " + " | ".join(curves) + " |", "|---|" + "---|" * len(curves)]
            rows += [f"| {k} | " + " | ".join(f"{c[k]:.3f}" if k < len(c) else "" for c in curves.values()) + " |"
                     for k in range(max(map(len, curves.values())))]
            text = (f"Metal vs non-metal ROC AUC, logistic regression on layer activations, {len(metal_y)} "
                    f"mp_is_metal compositions, {args.folds}-fold CV (layer 0 = input)\n\n" + "\n".join(rows) + "\n")
            if shifts:
                text += (f"\nDropout off vs the mean of 30 dropout-on passes on every parsable row of {args.shift} "
                         "(MAE in the target's unit; slope of the predictions against the targets, 1 = no shrinkage)"
                         "\n\n| model | rows | MAE dropout off | MAE mean | slope dropout off | slope mean |\n"
                         "|---|---|---|---|---|---|\n" + "".join(
                             f"| {label} | {v['n']:.0f} | {v['mae_off']:.4f} | {v['mae_mean']:.4f} | "
                             f"{v['slope_off']:.3f} | {v['slope_mean']:.3f} |\n" for label, v in shifts.items()))
            client.log_text(run_id, text, "analysis.md")
            print(text)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return curves


if __name__ == "__main__":
    main()
