"""The test confusion matrix of a classification run as MLflow artifacts.

After testing, from the module's ``last_test_confusion`` (rows: true class, columns: predicted)
and the datamodule's ``class_names``: ``confusion/confusion_matrix.json`` (counts and names, which
``make cv`` sums over folds), ``confusion/confusion_matrix.md`` and ``confusion/confusion_matrix.png``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import lightning.pytorch as pl
import numpy as np

from callbacks.mlflow_run import mlflow_logger


def confusion_markdown(matrix: np.ndarray, names: list[str], title: str = "") -> str:
    """A Markdown table: rows true class, columns predicted, with per-class recall."""
    matrix = np.asarray(matrix, dtype=int)
    short = [str(k) for k in range(len(names))]
    lines = ([f"## {title}", ""] if title else []) + [
        "| true \\ predicted | " + " | ".join(short) + " | n | recall |", "|---" * (len(names) + 3) + "|"]
    for k, row in enumerate(matrix):
        recall = row[k] / row.sum() if row.sum() else float("nan")
        lines.append(f"| {k} {names[k]} | " + " | ".join(str(v) for v in row) + f" | {row.sum()} | {recall:.2f} |")
    total = matrix.sum()
    lines += ["", f"accuracy {np.trace(matrix) / total:.4f} over {total} samples" if total else "no samples"]
    return "\n".join(lines) + "\n"


def confusion_plot(matrix: np.ndarray, names: list[str], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(names), 1.0 + 0.6 * len(names)))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(int(v)), ha="center", va="center", color="white" if v > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def log_confusion(client, run_id: str, matrix: np.ndarray, names: list[str], title: str = "") -> None:
    """Write the three confusion artifacts into ``run_id`` under ``confusion/``."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "confusion_matrix.json").write_text(json.dumps({"class_names": names,
                                                                  "matrix": np.asarray(matrix).tolist()}))
        Path(tmp, "confusion_matrix.md").write_text(confusion_markdown(matrix, names, title))
        confusion_plot(matrix, names, Path(tmp, "confusion_matrix.png"), title)
        for name in ("confusion_matrix.json", "confusion_matrix.md", "confusion_matrix.png"):
            client.log_artifact(run_id, str(Path(tmp, name)), "confusion")


class ConfusionMatrixArtifact(pl.Callback):
    def on_test_end(self, trainer, pl_module):
        matrix = getattr(pl_module, "last_test_confusion", None)
        logger = mlflow_logger(trainer)
        if matrix is None or logger is None or trainer.global_rank != 0:
            return
        names = list(getattr(trainer.datamodule, "class_names", [str(k) for k in range(len(matrix))]))
        test_input = getattr(trainer.datamodule, "hparams", {}).get("test_input")
        title = f"test confusion ({test_input} frames)" if test_input else "test confusion"
        log_confusion(logger.experiment, logger.run_id, matrix.numpy(), names, title)
