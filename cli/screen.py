"""``make screen``: combinatorial screening for new stable compounds (diss. 3.3.9).

Enumerates A_w B_x C_y D_z (``materials.enumeration``) chunk by chunk, scores
each chunk with a trained model, keeps compositions predicted at least
THRESHOLD eV/atom below the convex hull of the model's training data, and
streams them to Parquet. Finished chunks are written as parts under
``<output>.partial/`` (each a complete Parquet file, so ``pandas.read_parquet``
reads a partial screen) with a ``_state.json``; rerunning the same command
resumes after the last finished chunk, also after a full disk. The parts are
merged into ``<output>`` at the end, and one MLflow run holds the counts per
arity, Table 3.3 and, for a model trained with a held-out system, which of the
withheld stable compounds the screen recovers (3.3.7). A model trained with
uncertainty gives each candidate its calibrated σ and the 95 % interval's upper
end; the report counts the candidates that stay THRESHOLD below the hull there.
"""

from __future__ import annotations

import argparse
import errno
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from callbacks.mlflow_run import experiment_id
from materials.screening import CANDIDATES
from datamodules.sources.registry import sha256_of
from materials.elements import ELEMNET_ELEMENTS, N_ELEMENTS
from materials.enumeration import (
    chunks, count_compositions, element_ids,
)

PAPER_COUNT = "~450M"
DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


class ScreenError(RuntimeError):
    """A screen that cannot start or go on, with what to do about it."""


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=False, help="a composition model: checkpoint path, latest (the latest "
                    "elemnet run), runs:/<id>/model or models:/<name>/<version>")
    ap.add_argument("--elements", default="", help="comma-separated elements to combine (default: all 86)")
    ap.add_argument("--min_arity", type=int, default=2)
    ap.add_argument("--max_arity", type=int, default=3, help="4 is the paper's A_w B_x C_y D_z")
    ap.add_argument("--max_sum", type=int, default=10, help="w+x+y+z <= max_sum")
    ap.add_argument("--threshold", type=float, default=0.2, help="eV/atom below the hull to keep")
    ap.add_argument("--output", type=Path, default=None, help="Parquet file (default outputs/screen/<run>.parquet)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing output or partial screen")
    ap.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1 ...")
    ap.add_argument("--precision", default="auto", choices=["auto", "32", "16-mixed", "bf16-mixed"])
    ap.add_argument("--batch_size", type=int, default=0, help="scoring batch (default 4096 CPU, 262144 GPU)")
    ap.add_argument("--count_only", action="store_true", help="print the enumeration counts and stop")
    ap.add_argument("--experiment", default="screening")
    args = ap.parse_args(argv)
    if not 2 <= args.min_arity <= args.max_arity <= 4:
        ap.error(f"need 2 <= min_arity <= max_arity <= 4, got {args.min_arity}..{args.max_arity}")
    if args.max_sum < args.max_arity:
        ap.error(f"max_sum {args.max_sum} is below max_arity {args.max_arity}: no composition fits")
    if not args.count_only and not args.ckpt:
        ap.error("--ckpt is required (a checkpoint from `make train TASK=elemnet`)")
    return args


def print_counts(n_elements: int, args) -> dict[int, int]:
    counts = count_compositions(n_elements, args.max_arity, args.max_sum, args.min_arity)
    paper = count_compositions(N_ELEMENTS, 4, 10, 2)
    print(f"this screen: {sum(counts.values()):,} compositions "
          + ", ".join(f"{k}-element {n:,}" for k, n in counts.items()), file=sys.stderr)
    print(f"paper settings (86 elements, arity 2-4, sum <= 10): {sum(paper.values()):,} exactly "
          f"(the dissertation says {PAPER_COUNT})", file=sys.stderr)
    return counts


def write_atomic(path: Path, write, kept_in: Path) -> None:
    """Write through a temporary file and rename, so ``path`` is whole or absent; a full disk says so."""
    tmp = path.with_name(f".{path.name}.tmp")  # hidden: a partial folder stays a readable Parquet dataset
    try:
        write(tmp)
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in DISK_FULL:
            raise ScreenError(f"disk full while writing {path} ({err.strerror}): every finished chunk is kept in "
                              f"{kept_in}; free space and run the same command again to resume") from err
        raise


class PartialScreen:
    """``<output>.partial/``: finished chunks as Parquet parts and ``state.json``."""

    def __init__(self, output: Path, signature: dict, overwrite: bool):
        self.output, self.dir = output, output.with_name(output.name + ".partial")
        self.state_file = self.dir / "_state.json"  # "_": Parquet readers skip it
        if output.exists() and not overwrite:
            raise ScreenError(f"output {output} exists; pass --overwrite to replace it, or choose another --output")
        if overwrite:
            output.unlink(missing_ok=True)
            shutil.rmtree(self.dir, ignore_errors=True)
        self.state = {"signature": signature, "next_chunk": 0, "done_compositions": 0, "parts": [],
                      "counts": {}, "exact_hulls": 0, "seconds": 0.0, "run_id": None}
        if self.state_file.exists():
            saved = json.loads(self.state_file.read_text())
            if saved["signature"] != signature:
                changed = sorted(k for k in signature if saved["signature"].get(k) != signature[k])
                raise ScreenError(f"{self.dir} holds a screen with other settings ({', '.join(changed)} differ); "
                                  "pass --overwrite to start again, or the same settings to resume it")
            self.state = saved
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def resumed(self) -> bool:
        return self.state["next_chunk"] > 0

    def finish_chunk(self, index: int, candidates: pd.DataFrame, n: int, arity: int, n_exact: int,
                     seconds: float) -> None:
        if len(candidates):
            name = f"part-{index:07d}.parquet"
            write_atomic(self.dir / name, lambda p: candidates.to_parquet(p, index=False, schema=CANDIDATES), self.dir)
            self.state["parts"].append(name)
        counts = self.state["counts"].setdefault(str(arity), {"compositions": 0, "candidates": 0})
        counts["compositions"] += n
        counts["candidates"] += len(candidates)
        self.state["next_chunk"] = index + 1
        self.state["done_compositions"] += n
        self.state["exact_hulls"] += n_exact
        self.state["seconds"] += seconds
        self.save()

    def save(self) -> None:
        write_atomic(self.state_file, lambda p: p.write_text(json.dumps(self.state, indent=1)), self.dir)

    def merge(self) -> pd.DataFrame:
        """Stream the parts (in chunk order) into the output file, one row group each; returns
        the columns the report needs."""
        def write(path: Path) -> None:
            with pq.ParquetWriter(path, CANDIDATES) as writer:
                for name in self.state["parts"]:
                    writer.write_table(pq.read_table(self.dir / name, schema=CANDIDATES))

        self.output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.output, write, self.dir)
        shutil.rmtree(self.dir)
        return pd.read_parquet(self.output, columns=["formula", "system", "arity", "distance", "confident_95"])


def load_model(ckpt: Path):
    from lightning_modules.composition_model import load_composition_model

    if not ckpt.exists():
        raise ScreenError(f"checkpoint {ckpt} does not exist; train one with `make train TASK=elemnet`")
    try:
        module, datamodule = load_composition_model(ckpt)
    except ValueError as err:
        raise ScreenError(f"{ckpt}: {err}") from err
    width = datamodule.n_features
    net_width = module.hparams["net"].n_features if hasattr(module.hparams["net"], "n_features") else width
    if datamodule.hparams.features == "fractions" and net_width != N_ELEMENTS:
        raise ScreenError(f"{ckpt}: the net takes {net_width} element fractions, not this project's "
                          f"{N_ELEMENTS} ElemNet elements ({', '.join(ELEMNET_ELEMENTS[:3])}, ...)")
    return module, datamodule


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        ids = element_ids(args.elements)
    except ValueError as err:
        raise ScreenError(str(err)) from err
    counts = print_counts(len(ids), args)
    if args.count_only:
        return {"counts": counts}
    from cli.runs import NoRunError, model_checkpoint
    from lightning_modules.pretrained import PretrainedError

    try:  # latest, runs:/<id>/model, models:/<name>/<version> or a path
        ckpt = model_checkpoint(args.ckpt, "elemnet")
    except (NoRunError, PretrainedError) as err:
        raise ScreenError(str(err)) from err
    if args.ckpt != str(ckpt) and args.output is None and args.ckpt != "latest":  # a model from MLflow
        args.output = Path("outputs/screen") / f"{ckpt.relative_to(Path('outputs') / 'downloaded').parts[0]}" \
            f"-arity{args.max_arity}.parquet"
    module, datamodule = load_model(ckpt)
    return run_screen(args, ckpt, module, datamodule, ids, counts)


def run_screen(args, ckpt: Path, module, datamodule, ids: np.ndarray, counts: dict[int, int]) -> dict:
    import mlflow
    from tqdm import tqdm

    from materials.screening import Scorer, chunk_fractions, screen_chunk
    from materials.enumeration import chunk_combinations
    from materials.hull import BinaryHullTable, HullIndex

    symbols = [ELEMNET_ELEMENTS[i] for i in ids]
    output = args.output or Path("outputs/screen") / f"{ckpt.parent.parent.name or ckpt.stem}-arity{args.max_arity}.parquet"
    signature = {"checkpoint_sha256": sha256_of(ckpt), "elements": symbols, "min_arity": args.min_arity,
                 "max_arity": args.max_arity, "max_sum": args.max_sum, "threshold": args.threshold}
    partial = PartialScreen(output, signature, args.overwrite)

    datamodule.setup()  # the training split: the hull the candidates are measured against
    train_f, train_e = datamodule.compositions["train"]
    index = HullIndex(train_f, train_e)
    binaries = BinaryHullTable(index, ids)
    scorer = Scorer(module, datamodule, args.device, args.precision, args.batch_size)
    first = next(chunks(len(ids), args.max_arity, args.min_arity))
    sample = chunk_fractions(ids, chunk_combinations(first, len(ids))[:2048], first.arity, args.max_sum, scorer.device)
    scorer.calibrate(sample)

    mlflow.set_experiment(experiment_id=experiment_id(mlflow.MlflowClient(), args.experiment))
    run = mlflow.start_run(run_id=partial.state["run_id"], run_name=None if partial.resumed else f"screen-{output.stem}")
    status = "FAILED"
    try:
        if partial.state["run_id"] is None:
            partial.state["run_id"] = run.info.run_id
            partial.save()
            mlflow.log_params({"checkpoint": str(ckpt), "elements": ",".join(symbols) if args.elements else "all 86",
                               "n_elements": len(ids), "min_arity": args.min_arity, "max_arity": args.max_arity,
                               "max_sum": args.max_sum, "threshold": args.threshold, "output": str(output),
                               "features": datamodule.hparams.features, "hull": "training split"})
        mlflow.set_tags({"experimentKind": "screen", "device": str(scorer.device), "sigma": scorer.sigma_kind,
                         "precision": scorer.precision_used, "resumed": str(partial.resumed)})
        total = sum(counts.values())
        bar = tqdm(total=total, initial=partial.state["done_compositions"], unit="comp", unit_scale=True,
                   desc="screen", smoothing=0.1, file=sys.stderr)
        for chunk in chunks(len(ids), args.max_arity, args.min_arity):
            if chunk.index < partial.state["next_chunk"]:
                continue
            start = time.perf_counter()
            result = screen_chunk(chunk, ids, args.max_sum, args.threshold, scorer, index, binaries)
            partial.finish_chunk(chunk.index, result.candidates, result.n_compositions, chunk.arity,
                                 result.n_exact_hulls, time.perf_counter() - start)
            bar.update(result.n_compositions)
        bar.close()
        candidates = partial.merge()
        summary = report(args, candidates, counts, partial.state, scorer, output)
        if datamodule.hparams.split == "holdout_system":
            summary["holdout"] = holdout(args, datamodule, scorer, ids, symbols, output)
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        mlflow.end_run(status)


def report(args, candidates: pd.DataFrame, counts: dict[int, int], state: dict, scorer, output: Path) -> dict:
    """Counts per arity and Table 3.3, printed and logged to the active MLflow run."""
    import mlflow

    from cli.screen_report import arity_summary, table_3_3

    per_arity = arity_summary(candidates, counts, with_std=scorer.has_std)
    table, f_block = table_3_3(candidates, args.max_arity)
    confident = int(candidates["confident_95"].sum()) if scorer.has_std else None
    sigma = ("" if confident is None else
             f"{confident:,} of them stay {args.threshold} eV/atom below the hull at the upper end of their "
             f"{'raw' if scorer.sigma_kind == 'raw' else scorer.sigma_kind + '-calibrated'} 95 % interval\n\n")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate = state["done_compositions"] / max(state["seconds"], 1e-9)
    text = (f"# Screen: {len(candidates):,} candidates >= {args.threshold} eV/atom below the training hull\n\n"
            f"device {scorer.device}, precision {scorer.precision_used}; {state['done_compositions']:,} compositions "
            f"in {state['seconds']:.1f} s of screening ({rate:,.0f}/s); exact hulls for {state['exact_hulls']:,} "
            f"systems; peak memory {peak_mib:,.0f} MiB\n\n{sigma}{per_arity.to_markdown(index=False)}\n\n"
            f"## Table 3.3 (systems with >= 1 candidate; {f_block:,} candidate systems with lanthanides or "
            f"actinides left out, as in the paper)\n\n{table.to_markdown(index=False)}\n")
    print(text, file=sys.stderr)
    for _, row in per_arity.iterrows():
        for key in per_arity.columns.drop("arity"):
            mlflow.log_metric(f"{row['arity']}/{key}", int(row[key]))
    if confident is not None:
        mlflow.log_metric("candidates_confident_95", confident)
    mlflow.log_metrics({"candidates": len(candidates), "compositions_per_s": rate, "screen_seconds": state["seconds"],
                        "exact_hull_systems": state["exact_hulls"], "peak_memory_mib": peak_mib})
    mlflow.log_text(text, "screen_report.md")
    mlflow.log_text(table.to_csv(index=False), "table_3_3.csv")
    print(f"wrote {len(candidates):,} candidates to {output}", file=sys.stderr)
    return {"candidates": len(candidates), "per_arity": per_arity, "table_3_3": table, "output": output}


def holdout(args, datamodule, scorer, ids, symbols, output: Path) -> dict | None:
    """For a model trained without a chemical system: which withheld stable compounds the screen finds."""
    import mlflow

    from cli.screen_report import binary_hull_plot, holdout_recovery, recovery_markdown
    from materials.screening import chunk_fractions
    from materials.enumeration import chunk_combinations
    from materials.hull import HullIndex

    system = datamodule.hparams.holdout_system.replace(",", "-").split("-")
    if sorted(system) != sorted(symbols):
        print(f"note: the model withheld {'-'.join(system)}; screen exactly ELEMENTS={','.join(system)} "
              "to see which withheld stable compounds it recovers", file=sys.stderr)
        return None
    fractions = torch.cat([chunk_fractions(ids, chunk_combinations(c, len(ids)), c.arity, args.max_sum, scorer.device)
                           for c in chunks(len(ids), args.max_arity, args.min_arity)])
    preds = scorer.predict(fractions).double().cpu().numpy()
    screened = pd.DataFrame({"fractions": list(fractions.cpu().double().numpy()), "predicted_dhf": preds})
    parts = [datamodule.compositions[s] for s in ("train", "val", "test")]
    all_f = np.concatenate([p[0] for p in parts]).astype(np.float64)
    all_e = np.concatenate([p[1] for p in parts]).astype(np.float64)
    true_index = HullIndex(all_f, all_e)  # the hull of all the data, withheld compounds included
    result = holdout_recovery(screened, all_f, all_e, true_index, parts[2][0].astype(np.float64), symbols)
    text = recovery_markdown(result)
    print(text, file=sys.stderr)
    mlflow.log_text(text, "holdout_recovery.md")
    mlflow.log_metrics({"holdout/recovered": result["recovered"], "holdout/withheld_stable": result["withheld_stable"],
                        "holdout/spurious": result["spurious"]})
    if len(symbols) == 2:
        plot = output.with_suffix(".hull.png")
        binary_hull_plot(screened, all_f, all_e, true_index, symbols, plot)
        mlflow.log_artifact(str(plot))
    return result


if __name__ == "__main__":
    try:
        main()
    except ScreenError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
