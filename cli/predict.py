"""``make predict``: predictions for a list of formulas from a checkpoint or an MLflow model.

The input is a CSV with a ``formula`` column (other columns are kept) or a
plain text file with one formula per line. ``--model`` takes a checkpoint path,
an MLflow run's model ``runs:/<run_id>/model`` or a registered model
``models:/<name>/<version>`` (``models:/<name>@<alias>``, ``models:/<name>/<alias>``).

The output keeps every input row and adds the prediction, named by the model's
target and unit (``formation_enthalpy_eV_per_atom``; ``prediction`` when the
training data were a user file), ``std`` for a model trained with uncertainty (calibrated, with the 95 %
interval ``low_95``, ``high_95``, when the model carries a calibration),
``run_id`` (the MLflow run that trained the model) and ``in_training_data``
(the formula's reduced composition was in the training or validation split).

A mistake in what the user gave (a missing argument, file or column, a bad
formula) ends in one paragraph that names the file, row and value, with exit
status 2 and no output file. With ``--skip_bad_rows`` the other rows are
predicted, the bad ones are left empty and listed.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cli.quiet import silence  # known third-party messages (lightning's advice to the code that saved the model)

silence()

#: the quantity each registered dataset's target is; with the datamodule's ``target_unit`` it names the prediction
TARGET_NAMES = {
    "oqmd_formation_enthalpy": "formation_enthalpy", "ssub": "formation_enthalpy", "mp_e_form": "formation_energy",
    "mp_on_hull": "formation_energy", "oqmd_energy_per_atom": "energy", "mp_e_hull": "energy_above_hull",
    "oqmd_band_gap": "band_gap", "mp_gap": "band_gap", "oqmd_volume_per_atom": "volume",
}
LIST_SUFFIXES = ("", ".txt", ".list", ".lst")
SHOWN_BAD_ROWS = 5
SKIP_HINT = "add --skip_bad_rows (make: ARGS=--skip_bad_rows) to predict the other rows and leave the bad ones empty"


class UsageError(Exception):
    """A mistake in what the user gave: reported as one paragraph, exit status 2, nothing written."""


def prediction_column(datamodule) -> str:
    """``formation_enthalpy_eV_per_atom``: the target and its unit; ``prediction`` for a user's dataset."""
    name = TARGET_NAMES.get(str(datamodule.hparams.get("dataset")))
    unit = getattr(datamodule, "target_unit", None)
    if name is None:
        return "prediction"
    if not unit:
        return name
    return f"{name}_{unit.replace('/', '_per_').replace('Å', 'A').replace('³', '3').replace(' ', '')}"


def is_mlflow_uri(model: str) -> bool:
    return "://" in model or model.startswith(("runs:/", "models:/"))


def recent_checkpoints(task: str | None, limit: int = 3) -> list[str]:
    """The best checkpoints of the task's newest runs under ``outputs/`` (``last.ckpt`` where none was kept)."""
    from cli.runs import OUTPUTS, run_folders

    tasks = [task] if task else sorted(p.name for p in OUTPUTS.glob("*") if p.is_dir())
    folders = sorted((f for t in tasks for f in run_folders(t)), reverse=True,
                     key=lambda f: (f / "checkpoints" / "last.ckpt").stat().st_mtime)
    return [str(max((f / "checkpoints").glob("best*.ckpt"), key=lambda c: c.stat().st_mtime,
                    default=f / "checkpoints" / "last.ckpt")) for f in folders[:limit]]


def usage(missing: list[str], task: str | None) -> str:
    ckpts = recent_checkpoints(task)
    ckpt = ckpts[0] if ckpts else f"outputs/{task or 'elemnet'}/<run>/checkpoints/best-<epoch>.ckpt"
    found = f" (the newest here: {', '.join(ckpts)})" if ckpts else ""
    return (f"missing {' and '.join(missing)}. CKPT (--model) is the trained model: a checkpoint file"
            f"{found}, latest (the best checkpoint of the task's latest run), an MLflow run's model runs:/<run_id>/model (run ids: make ui), or a registered model "
            "models:/<name>/<version> or models:/<name>@<alias>. INPUT (--input) is a .csv file with a formula column "
            "(its other columns are kept) or a .txt file with one formula per line. Optional: OUTPUT=<file.csv> "
            "(default: <INPUT>.predictions.csv) and ARGS=--skip_bad_rows (predict the good rows when some formulas are "
            f"bad). Example: make predict TASK={task or 'elemnet'} CKPT={ckpt} INPUT=formulas.csv")


def check_model_source(model: str, task: str | None) -> None:
    """What can be checked before anything is loaded: the checkpoint file, or the shape of the URI."""
    if is_mlflow_uri(model):
        if model.startswith("runs:/") and not re.fullmatch(r"runs:/[^/]+/.+", model):
            raise UsageError(f"CKPT {model!r} is not a run's model: write runs:/<run_id>/model")
        if model.startswith("models:/") and not re.fullmatch(r"models:/[^/@]+(/[^/]+|@[^/]+)", model):
            raise UsageError(f"CKPT {model!r} is not a registered model: write models:/<name>/<version> "
                             "or models:/<name>@<alias>")
        return
    path = Path(model)
    if path.is_dir():
        inside = sorted(str(p) for p in path.rglob("*.ckpt"))[:3]
        raise UsageError(f"CKPT {path} is a folder, not a checkpoint file; "
                         + (f"give a file in it, e.g. {', '.join(inside)}" if inside else "it holds no .ckpt file"))
    if not path.exists():
        ckpts = recent_checkpoints(task)
        hint = (f"the newest checkpoints of {task or 'this project'}: {', '.join(ckpts)}" if ckpts
                else f"no checkpoint under outputs/{task or '<task>'} yet: make train TASK={task or '<task>'}")
        raise UsageError(f"CKPT {path} does not exist; {hint}")


# ---------------------------------------------------------------------------------------------- the input file
def read_input(path: Path) -> tuple[pd.DataFrame, str, np.ndarray, list[tuple[int, object, str]]]:
    """The input's rows as text, the name of the formula column, the file row of each row (as an editor
    numbers them) and the rows that are malformed as CSV."""
    kind = "a .csv file with a formula column or a .txt file with one formula per line"
    if not path.exists():
        raise UsageError(f"INPUT {path} does not exist (relative paths start at {Path.cwd()}); it should be {kind}")
    if path.is_dir():
        raise UsageError(f"INPUT {path} is a folder; it should be {kind}")
    suffix = path.suffix.lower()
    if suffix != ".csv" and suffix not in LIST_SUFFIXES:
        raise UsageError(f"INPUT {path} is a {suffix} file; it should be {kind} (save a spreadsheet as CSV UTF-8)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"INPUT {path} cannot be read ({exc.strerror})") from None
    if b"\x00" in data[:4096] or data[:2] == b"\x1f\x8b" or data[:4] == b"PK\x03\x04":
        raise UsageError(f"INPUT {path} is a binary file (compressed, a spreadsheet, or not text); it should be {kind}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        row = data[:exc.start].count(b"\n") + 1
        raise UsageError(f"INPUT {path}, row {row}: not UTF-8 text (byte {data[exc.start:exc.start + 1]!r}); "
                         "save it as CSV UTF-8 or plain UTF-8 text") from None
    if not text.strip():
        raise UsageError(f"INPUT {path} is empty; it should be {kind}")
    if suffix == ".csv":
        return read_csv_rows(path, text)
    rows, formulas = zip(*[(k, line.strip()) for k, line in enumerate(text.splitlines(), 1) if line.strip()])
    return pd.DataFrame({"formula": formulas}, dtype=object), "formula", np.asarray(rows), []


def read_csv_rows(path: Path, text: str):
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
        column = next((h for h in header if h.lower() == "formula"), None)
        if column is None:
            raise UsageError(f"INPUT {path}, row 1: no formula column; the header is {header}. A CSV needs a header "
                             "row that names a formula column; a list without a header goes in a .txt file")
        records, rows, problems, start = [], [], [], reader.line_num + 1
        for fields in reader:
            row, start = start, reader.line_num + 1
            if not any(f.strip() for f in fields):
                continue
            if len(fields) > len(header):
                problems.append((row, ",".join(fields), f"the row has {len(fields)} fields, the header {len(header)}"))
            records.append((fields + [""] * len(header))[:len(header)])
            rows.append(row)
    except csv.Error as exc:
        raise UsageError(f"INPUT {path}, row {reader.line_num}: not readable as CSV ({exc})") from None
    if not records:
        raise UsageError(f"INPUT {path} has a header but no rows of formulas")
    table = pd.DataFrame(records, columns=header, dtype=object)
    table[column] = table[column].str.strip()
    return table, column, np.asarray(rows), problems


def parse_input(path: Path, skip_bad: bool):
    """The table, its formula column, which rows are good and their element fractions; the bad rows are an
    error, or with ``skip_bad`` listed on stderr."""
    from materials.composition import parse_compositions

    table, column, rows, problems = read_input(path)
    parsed = parse_compositions(table[column].tolist(), str(path), rows=rows, skip_bad=True)
    malformed_rows = {row for row, _, _ in problems}
    malformed = np.isin(rows, list(malformed_rows))
    ok = parsed.ok & ~malformed
    fractions = parsed.fractions[~malformed[parsed.ok]]
    problems = sorted(problems + [p for p in parsed.problems if p[0] not in malformed_rows])
    shown = "; ".join(f"row {row}: {reason}: {value!r}" for row, value, reason in problems[:SHOWN_BAD_ROWS])
    more = f"; and {len(problems) - SHOWN_BAD_ROWS} more" if len(problems) > SHOWN_BAD_ROWS else ""
    if problems and not skip_bad:
        row, value, reason = problems[0]
        others = f" (and {len(problems) - 1} more bad rows)" if len(problems) > 1 else ""
        raise UsageError(f"INPUT {path}, row {row}: {reason}: {value!r}{others}. Correct it, or {SKIP_HINT}")
    if not ok.any():
        raise UsageError(f"INPUT {path}: none of its {len(rows)} rows holds a formula the model can use: {shown}{more}")
    if problems:
        print(f"predict: skipped {len(problems)} of {len(rows)} rows of {path} (their prediction is left empty): "
              f"{shown}{more}", file=sys.stderr)
    return table, column, ok, fractions


# ------------------------------------------------------------------------------------------------------ the model
def load_model(model: str):
    """The regressor, the datamodule that featurises for it, and the MLflow run that trained it."""
    if not is_mlflow_uri(model):
        import torch

        from lightning_modules.composition_model import load_composition_model

        try:
            module, datamodule = load_composition_model(model)
            run_id = torch.load(model, map_location="cpu", weights_only=True).get("mlflow_run_id")
        except Exception as exc:  # torch, pickle and lightning each raise their own type for a file that is no model
            reason = " ".join(str(exc).split())[:200]
            raise UsageError(f"CKPT {model} is not a checkpoint of a composition model of this project "
                             f"({type(exc).__name__}: {reason})") from None
        return module, datamodule, run_id
    import mlflow.pyfunc

    uri = re.sub(r"^models:/([^/@]+)/(?!\d+$|latest$|none$|staging$|production$|archived$)([^/]+)$", r"models:/\1@\2",
                 model, flags=re.IGNORECASE)  # models:/<name>/<alias> as MLflow spells it
    try:
        python_model = mlflow.pyfunc.load_model(uri).unwrap_python_model()
        run_id = (uri.split("/")[1] if uri.startswith("runs:/") else
                  registered_run_id(uri) if uri.startswith("models:/") else None)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        store = os.environ["MLFLOW_TRACKING_URI"]
        raise UsageError(f"CKPT {model}: MLflow cannot load this model ({reason}); the store is "
                         f"MLFLOW_TRACKING_URI={store} (run ids and models: make ui)") from None
    if not (hasattr(python_model, "module") and hasattr(python_model, "datamodule")):
        raise UsageError(f"CKPT {model} is a {type(python_model).__name__}, not a composition model of this project")
    return python_model.module, python_model.datamodule, run_id


def registered_run_id(uri: str) -> str | None:
    """The run that logged a registered model version (``models:/<name>/<version|stage|latest>`` or ``@alias``)."""
    import mlflow

    client = mlflow.MlflowClient()
    name = uri.split(":/", 1)[1]
    if "@" in name:
        return client.get_model_version_by_alias(*name.rsplit("@", 1)).run_id
    name, _, which = name.partition("/")
    if which.isdigit():
        return client.get_model_version(name, which).run_id
    versions = [v for v in client.search_model_versions(f"name = '{name}'")
                if which.lower() == "latest" or (v.current_stage or "").lower() == which.lower()]
    return max(versions, key=lambda v: int(v.version)).run_id if versions else None


def rebuilt_split(datamodule) -> tuple[dict[str, np.ndarray] | None, str]:
    """The model's train, val and test compositions, rebuilt with the checkpoint's data settings out of the
    cached dataset; None and why if they cannot be (predicting never fetches a dataset)."""
    from datamodules.sources.derived import DERIVED
    from datamodules.sources.registry import DATASETS, data_dir

    name = str(datamodule.hparams.get("dataset"))
    sources = DERIVED[name].sources if name in DERIVED else (name,) if name in DATASETS else ()
    local = all((data_dir() / "raw" / e.member).exists() for s in sources for e in DATASETS[s].values())
    local = local and (name not in DERIVED or any((data_dir() / "derived").glob(f"{name}-*.csv")))
    if not local or not (sources or Path(name).is_file()):
        return None, f"the training data ({name}) are not on this machine (make data fetches the registered datasets)"
    try:
        rebuilt = type(datamodule)(**dict(datamodule.hparams))
        rebuilt.setup()
    except Exception as exc:
        return None, f"the training split of {name} could not be rebuilt ({type(exc).__name__}: {exc})"
    return {split: rebuilt.compositions[split][0] for split in ("train", "val", "test")}, ""


def training_membership(split: dict[str, np.ndarray], fractions: np.ndarray) -> np.ndarray:
    """Whether each composition (reduced: Fe4O6 is Fe2O3) was in the model's training or validation split."""
    from materials.composition import composition_keys

    seen = np.concatenate([split["train"], split["val"]])
    keys = composition_keys(np.concatenate([seen, fractions]))
    return np.isin(keys[len(seen):], keys[:len(seen)])


def extrapolation(split: dict[str, np.ndarray], fractions: np.ndarray) -> dict[str, np.ndarray]:
    """:class:`materials.extrapolation.ExtrapolationFlag` from the training split, its threshold from the
    validation rows (the 95th percentile of their distance to the nearest training composition)."""
    from materials.extrapolation import ExtrapolationFlag

    return ExtrapolationFlag.fit(split["train"], split["val"]).assess(fractions)


# ---------------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="", help="checkpoint path, runs:/<run_id>/model or models:/<name>/<version>")
    ap.add_argument("--input", default="", help="a .csv with a formula column, or a .txt with one formula per line")
    ap.add_argument("--output", default="", help="CSV to write (default: <input>.predictions.csv)")
    ap.add_argument("--task", default=None, help="the task (make's TASK), to suggest its checkpoints")
    ap.add_argument("--skip_bad_rows", action="store_true", help="predict the good rows, leave bad ones empty")
    return ap.parse_args(argv)


def predict(args: argparse.Namespace) -> pd.DataFrame:
    missing = [name for name, value in (("CKPT", args.model), ("INPUT", args.input)) if not value.strip()]
    if missing:
        raise UsageError(usage(missing, args.task))
    if args.model == "latest":  # the best checkpoint of the task's latest run (cli/runs.py)
        from cli.runs import NoRunError, latest_checkpoint

        try:
            args.model = str(latest_checkpoint(args.task or "elemnet"))
        except NoRunError as err:
            raise UsageError(f"CKPT latest: no run of {args.task or 'elemnet'} yet (make train TASK="
                             f"{args.task or 'elemnet'})") from err
        print(f"predict: CKPT latest = {args.model}", file=sys.stderr)
    check_model_source(args.model, args.task)
    source = Path(args.input)
    table, column, ok, fractions = parse_input(source, args.skip_bad_rows)
    output = Path(args.output) if args.output else source.with_suffix(".predictions.csv")
    if output.resolve() == source.resolve():
        raise UsageError(f"OUTPUT {output} is the input file; name another file")
    if not output.parent.is_dir():
        raise UsageError(f"OUTPUT {output}: the folder {output.parent} does not exist")

    from lightning_modules.composition_model import predict_formulas

    module, datamodule, run_id = load_model(args.model)
    out = predict_formulas(module, datamodule, table[column][ok].tolist(), source=str(source))
    name = prediction_column(datamodule)
    for col, new in ((name, "prediction"), ("std", "std"), ("low_95", "low_95"), ("high_95", "high_95")):
        if new in out:
            table[col] = np.nan
            table.loc[ok, col] = out[new].to_numpy()
    table["run_id"] = run_id or ""
    split, why = rebuilt_split(datamodule)
    if split is None:
        print(f"predict: no in_training_data or extrapolation columns: {why}", file=sys.stderr)
    else:
        columns = {"in_training_data": training_membership(split, fractions), **extrapolation(split, fractions)}
        for col, values in columns.items():
            table[col] = pd.array([pd.NA] * len(table), dtype="Float64" if values.dtype.kind == "f" else "boolean")
            table.loc[ok, col] = values
        flagged = int(columns["extrapolation"].sum())
        if flagged:
            print(f"predict: {flagged} of {int(ok.sum())} compositions lie outside the training data (column "
                  "extrapolation: an unseen chemical system, or farther from the nearest training composition than "
                  "95 % of the validation rows); trust their predictions less", file=sys.stderr)
    part = output.with_name(output.name + ".part")
    try:
        table.to_csv(part, index=False)
        part.replace(output)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise UsageError(f"OUTPUT {output} cannot be written ({exc.strerror})") from None
    print(f"predict: wrote {int(ok.sum())} predictions ({name}) of {len(table)} rows to {output}", file=sys.stderr)
    return table


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    try:
        return predict(args)
    except UsageError as exc:
        print(f"predict: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
