"""``make reconstruct INPUT=<image or volume> [METHOD=descriptor|gram]``: statistically equivalent reconstructions.

Reads a two-phase image (``.npy``: a 2-D or 3-D array of 0/1; ``.png``: pixels above mid-grey are phase 1),
reconstructs it with ``--method`` (:mod:`materials.reconstruction`; ``--methods`` for several) and with the
Gaussian-random-field baseline of the same autocorrelation, each at exactly the original's volume fraction,
and logs one MLflow run (experiment ``reconstruction``): per method its two-point, lineal-path and volume-fraction
errors against the original (``<method>/two_point_error``, …) and seconds, ``plots/reconstructions.png``
(the original beside each result; 3-D volumes by their middle slice) and each result as ``<method>.npy``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from callbacks.mlflow_run import experiment_id


class UsageError(Exception):
    """A user error: its message names the file and what is wrong with it (exit status 2)."""


def read_image(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise UsageError(f"INPUT {path} does not exist or is not a file; give a .npy array of 0/1 or a .png image")
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise UsageError(f"INPUT {path} is not a NumPy array file ({err})") from None
        bad = ~np.isin(array, (0, 1))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise UsageError(f"INPUT {path}: values must be 0 or 1 (two phases); pixel {where} is "
                             f"{array[where].item()!r}")
    elif path.suffix == ".png":
        import matplotlib.image

        array = matplotlib.image.imread(path)
        array = (array[..., :3].mean(-1) if array.ndim == 3 else array) > 0.5
    else:
        raise UsageError(f"INPUT {path} is a {path.suffix or 'suffix-less'} file; give a .npy array of 0/1 or a .png")
    if array.ndim not in (2, 3) or min(array.shape) < 4:
        raise UsageError(f"INPUT {path}: an image of shape {array.shape}; give a 2-D or 3-D array, 4 pixels or more "
                         "per side")
    if not 0 < array.mean() < 1:
        raise UsageError(f"INPUT {path}: only one phase present; a reconstruction needs both")
    return torch.from_numpy(np.asarray(array, dtype=np.float64))


def figure(original: torch.Tensor, results: dict[str, torch.Tensor], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def view(x):
        return x[x.shape[0] // 2] if x.dim() == 3 else x

    panels = {"original": original, **results}
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
    for ax, (name, image) in zip(np.atleast_1d(axes), panels.items()):
        ax.imshow(view(image).numpy(), cmap="gray", interpolation="nearest")
        ax.set(title=name, xticks=[], yticks=[])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    from materials.reconstruction import METHODS, descriptor_errors

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default="")
    ap.add_argument("--methods", nargs="+", default=["descriptor"], choices=[m for m in METHODS if m != "grf"])
    ap.add_argument("--steps", type=int, default=300, help="optimiser steps of each method")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        if not args.input:
            raise UsageError("INPUT=<image> is required: a .npy array of 0/1 (2-D or 3-D) or a .png image")
        original = read_image(Path(args.input))
    except UsageError as err:
        print(f"reconstruct: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    results, scores = {}, {}
    for method in [*args.methods, "grf"]:
        began = time.perf_counter()
        results[method] = METHODS[method](original, steps=args.steps, seed=args.seed)
        scores[method] = {**descriptor_errors(original, results[method]), "seconds": time.perf_counter() - began}
        print(f"{method:>10}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores[method].items()), flush=True)
    import mlflow

    mlflow.set_experiment(experiment_id=experiment_id(mlflow.MlflowClient(), "reconstruction"))
    with mlflow.start_run(run_name=f"reconstruct-{Path(args.input).stem}") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({"input": args.input, "shape": list(original.shape), "methods": args.methods,
                           "steps": args.steps, "seed": args.seed, "volume_fraction": float(original.mean())})
        mlflow.log_metrics({f"{m}/{k}": v for m, s in scores.items() for k, v in s.items()})
        mlflow.log_artifact(str(figure(original, results, Path(tmp) / "reconstructions.png")), "plots")
        for method, image in results.items():
            np.save(Path(tmp) / f"{method}.npy", image.numpy().astype(np.uint8))
            mlflow.log_artifact(str(Path(tmp) / f"{method}.npy"))
        print(f"run {run.info.run_id} (experiment reconstruction): plots/reconstructions.png and <method>.npy; make ui")
    return scores


if __name__ == "__main__":
    main()
