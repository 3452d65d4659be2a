"""``make predict``: predictions for a list of formulas from a checkpoint or an MLflow model.

The input is a CSV with a ``formula`` column (other columns are kept) or a
plain text file with one formula per line. ``--model`` takes a checkpoint path
or an MLflow model URI (``runs:/<run_id>/model``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db")


def read_formulas(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.suffix == ".csv":
        table = pd.read_csv(path)
        if "formula" not in table.columns:
            raise ValueError(f"{path}, row 1: no 'formula' column; the header is {list(table.columns)}")
        return table
    lines = [ln.strip() for ln in path.read_text().rstrip().splitlines()]  # line k is row k
    return pd.DataFrame({"formula": lines})


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="checkpoint path or MLflow model URI")
    ap.add_argument("--input", required=True, type=Path)
    ap.add_argument("--output", type=Path, default=None, help="CSV to write (default: <input>.predictions.csv)")
    ap.add_argument("--skip_bad_rows", action="store_true", help="write NaN for bad formulas instead of stopping")
    args = ap.parse_args(argv)
    table = read_formulas(args.input)
    std = None
    if "://" in args.model or args.model.startswith(("runs:/", "models:/")):
        import mlflow.pyfunc

        preds = mlflow.pyfunc.load_model(args.model).predict(table[["formula"]])
        if isinstance(preds, pd.DataFrame):  # a model with uncertainty: prediction and std
            std, preds = preds["std"].to_numpy(), preds["prediction"].to_numpy()
    else:
        from callbacks.composition_model import load_composition_model, predict_formulas

        module, datamodule = load_composition_model(args.model)
        first_row = 2 if args.input.suffix == ".csv" else 1  # below the CSV header, or line 1 of a list
        out = predict_formulas(module, datamodule, table["formula"], skip_bad=args.skip_bad_rows,
                               source=str(args.input), first_row=first_row)
        preds = out["prediction"].to_numpy()
        std = out["std"].to_numpy() if "std" in out else None
    table["prediction"] = preds
    if std is not None:
        table["std"] = std
    output = args.output or args.input.with_suffix(".predictions.csv")
    table.to_csv(output, index=False)
    print(f"wrote {len(table)} predictions to {output}", file=sys.stderr)
    return table


if __name__ == "__main__":
    main()
