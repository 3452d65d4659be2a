"""make screen: exact candidates, resume after a kill or a full disk, refusals that say why."""

import itertools
import json
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from cli.configs import task_configs
from conftest import mlflow_server, run_checkpoints, run_module
from materials.enumeration import count_compositions

# runs the real commands end to end: `make test` (CI), not `make test-fast`
pytestmark = pytest.mark.slow

ELEMENTS = "Li,Na,K,O,F,Cl,Ti,Fe,Y,Cu"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small real ElemNet (SSUB, 5 epochs), trained by the CLI in its own folder."""
    root = tmp_path_factory.mktemp("screen")
    (root / "mlruns").mkdir()
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlruns/mlflow.db"}
    args = [*task_configs("elemnet", overlays=("smoke",)), "--data.init_args.dataset=ssub",
            "--data.init_args.skip_bad_rows=true", "--data.init_args.split=random",
            "--data.init_args.train_fraction=1.0", "--data.init_args.batch_size=32",
            "--trainer.max_epochs=5", "--trainer.limit_train_batches=1.0"]
    out = screen(root, env, args, module="cli.train")
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = next(run_checkpoints(root, "elemnet")[-1].glob("best*.ckpt"))
    return root, env, ckpt


def screen(cwd, env, args, module="cli.screen", **kwargs):
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return run_module(module, args, cwd, **kwargs)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def args_for(ckpt, output, *extra):
    return ["--ckpt", str(ckpt), "--elements", ELEMENTS, "--max_arity", "4", "--max_sum", "6",
            "--output", str(output), *extra]


def test_candidates_are_exactly_those_below_the_pymatgen_hull(trained):
    root, env, ckpt = trained
    out = screen(root, env, ["--ckpt", str(ckpt), "--elements", "Li,Na,O,F,Cl", "--max_arity", "3",
                             "--max_sum", "6", "--threshold", "0.1", "--output", str(root / "tiny.parquet")])
    assert out.returncode == 0, out.stderr[-3000:]
    got = pd.read_parquet(root / "tiny.parquet")

    # The same question answered the slow, independent way: formulas by brute force, the public
    # predict path, pymatgen's PhaseDiagram over the model's training compositions.
    from lightning_modules.composition_model import load_composition_model, predict_formulas
    from materials.elements import ELEMNET_ELEMENTS

    module, dm = load_composition_model(ckpt)
    dm.setup()
    symbols = ["Li", "Na", "O", "F", "Cl"]
    formulas = set()
    for amounts in itertools.product(range(7), repeat=5):
        if 2 <= sum(a > 0 for a in amounts) <= 3 and sum(amounts) <= 6:
            formulas.add(Composition(dict(zip(symbols, amounts))).reduced_formula)
    formulas = sorted(formulas)
    pred = predict_formulas(module, dm, formulas)["prediction"].to_numpy()
    fractions, energies = dm.compositions["train"]
    cols = [ELEMNET_ELEMENTS.index(s) for s in symbols]
    inside = ~np.delete(fractions, cols, axis=1).any(axis=1)
    entries = [PDEntry(Composition({s: 1}), 0.0) for s in symbols]
    entries += [PDEntry(Composition({s: float(row[c]) for s, c in zip(symbols, cols) if row[c] > 0}), float(e))
                for row, e in zip(fractions[inside], energies[inside])]
    diagram = PhaseDiagram(entries)
    distance = pred - np.array([diagram.get_hull_energy_per_atom(Composition(f)) for f in formulas])
    clear = np.abs(distance + 0.1) > 1e-4  # leave out float32 ties at the threshold itself
    expected = {f for f, d, c in zip(formulas, distance, clear) if c and d <= -0.1}
    got_set = {Composition(f).reduced_formula for f in got["formula"]}
    borderline = {f for f, c in zip(formulas, clear) if not c}
    assert expected and got_set - borderline == expected
    assert len(got) == len(got_set)
    # and the distances are the same numbers
    by_formula = dict(zip(formulas, distance))
    np.testing.assert_allclose(got["distance"], [by_formula[Composition(f).reduced_formula] for f in got["formula"]],
                               atol=1e-5)


def test_resume_after_a_kill_gives_the_uninterrupted_output(trained):
    root, env, ckpt = trained
    whole = screen(root, env, args_for(ckpt, root / "whole.parquet"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert "446,597,140 exactly" in whole.stderr

    resumed = root / "resumed.parquet"
    state = root / "resumed.parquet.partial" / "_state.json"
    proc = subprocess.Popen([sys.executable, "-m", "cli.screen", *args_for(ckpt, resumed)], cwd=root,
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["next_chunk"] >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(state.read_text())["next_chunk"]
    assert 3 <= done < 1 + 10 + 45, "the screen was not interrupted mid-way"
    partial = pd.read_parquet(state.parent)  # a partial screen is readable as it is
    assert len(partial) > 0 and not resumed.exists()

    again = screen(root, env, args_for(ckpt, resumed))
    assert again.returncode == 0, again.stderr[-3000:]
    pd.testing.assert_frame_equal(pd.read_parquet(resumed), pd.read_parquet(root / "whole.parquet"))
    assert not state.parent.exists()

    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["screening"])
    mine = runs[runs["params.output"] == str(resumed)]
    assert len(mine) == 1 and mine.iloc[0]["status"] == "FINISHED"  # one run, resumed to the end
    assert mine.iloc[0]["metrics.candidates"] == len(pd.read_parquet(resumed))


def test_full_disk_keeps_finished_chunks_and_resumes(trained):
    """A file-size limit on the screen process stands in for a disk that fills: every part
    (< 30 kB) fits, the merged output (> 100 kB) does not. Runs log to a tracking server in
    its own process, so only the screen's own files meet the limit."""
    root, env, ckpt = trained
    output = root / "full.parquet"
    args = args_for(ckpt, output, "--threshold", "-50")  # keep every composition: a large output
    limit = 64 * 1024

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    with mlflow_server(f"sqlite:///{root}/mlruns/server.db", root, str(root / "server-artifacts")) as url:
        run_env = {**os.environ, **env, "MLFLOW_TRACKING_URI": url}
        proc = subprocess.run([sys.executable, "-m", "cli.screen", *args], cwd=root, env=run_env,
                              capture_output=True, text=True, preexec_fn=small_disk, timeout=600)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert "disk full while writing" in proc.stderr and "run the same command again to resume" in proc.stderr
        partial = output.with_name(output.name + ".partial")
        kept = pd.read_parquet(partial, dtype_backend="numpy_nullable")  # the finished chunks stay readable
        assert len(kept) > 0 and not output.exists()

        again = subprocess.run([sys.executable, "-m", "cli.screen", *args], cwd=root, env=run_env,
                               capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
    total = pd.read_parquet(output, dtype_backend="numpy_nullable")
    assert len(total) == sum(count_compositions(10, 4, 6).values())  # every composition, once
    # (nullable dtypes on both reads: confident_95 is all null for a model without σ)
    pd.testing.assert_frame_equal(total.iloc[: len(kept)], kept.reset_index(drop=True))


def test_refusals_name_the_problem(trained):
    root, env, ckpt = trained
    out = screen(root, env, ["--ckpt", str(ckpt), "--elements", "Fe,Qq"])
    assert out.returncode == 2 and "unknown element(s) ['Qq']" in out.stderr

    existing = root / "exists.parquet"
    existing.write_bytes(b"not yours")
    out = screen(root, env, args_for(ckpt, existing))
    assert out.returncode == 2 and f"output {existing} exists; pass --overwrite" in out.stderr

    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    state["CompositionDataModule"]["elements"] = list(reversed(state["CompositionDataModule"]["elements"]))
    other = root / "other-elements.ckpt"
    torch.save(state, other)
    out = screen(root, env, args_for(other, root / "other.parquet"))
    assert out.returncode == 2 and "different element list" in out.stderr


def test_the_model_may_be_named_latest_or_by_mlflow_uri(trained):
    """`latest` (the task's latest run), `runs:/<id>/model` and `models:/<name>@best` screen as the checkpoint does."""
    root, env, ckpt = trained
    run_id = torch.load(ckpt, map_location="cpu", weights_only=True)["mlflow_run_id"]
    tables = {}
    for spec in (str(ckpt), "latest", f"runs:/{run_id}/model", "models:/elemnet-ssub@best"):
        output = root / f"named-{len(tables)}.parquet"
        out = screen(root, env, ["--ckpt", spec, "--elements", "Li,Na,O,F", "--max_arity", "2", "--max_sum", "4",
                                 "--threshold", "-5", "--output", str(output)])
        assert out.returncode == 0, (spec, out.stderr[-3000:])
        tables[spec] = pd.read_parquet(output)
    first = tables[str(ckpt)]
    assert len(first) > 0
    for spec, table in tables.items():
        pd.testing.assert_frame_equal(table, first, check_exact=False, atol=1e-5, obj=spec)


def test_candidates_of_a_model_with_uncertainty_carry_its_calibrated_interval(tmp_path):
    """An ensemble's candidates carry the calibrated σ and the hull distance at the upper end of the 95 %
    interval that `make predict` gives for the same formula; `confident_95` is exactly that bound below the
    threshold, and the report counts them."""
    (tmp_path / "mlruns").mkdir()
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlruns/mlflow.db"}
    args = [*task_configs("elemnet", overlays=("smoke",)), "--data.init_args.dataset=ssub",
            "--data.init_args.skip_bad_rows=true", "--data.init_args.split=random", "--data.init_args.batch_size=32",
            "--trainer.max_epochs=2",
            "--model.init_args.uncertainty=ensemble", "--model.init_args.ensemble_size=2"]
    out = screen(tmp_path, env, args, module="cli.train")
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = next(run_checkpoints(tmp_path, "elemnet")[-1].glob("best*.ckpt"))
    out = screen(tmp_path, env, ["--ckpt", str(ckpt), "--elements", "Li,Na,O,F,Cl", "--max_arity", "3",
                                 "--max_sum", "6", "--threshold", "-2", "--output", str(tmp_path / "s.parquet")])
    assert out.returncode == 0, out.stderr[-3000:]
    got = pd.read_parquet(tmp_path / "s.parquet")
    assert len(got) > 20 and (got["std"] > 0).all()

    from lightning_modules.composition_model import load_composition_model, predict_formulas

    module, dm = load_composition_model(ckpt)
    assert module.calibration is not None
    expected = predict_formulas(module, dm, list(got["formula"]))
    np.testing.assert_allclose(got["std"], expected["std"], rtol=1e-4)
    np.testing.assert_allclose(got["distance_high_95"], expected["high_95"] - got["hull_energy"], atol=1e-4)
    assert got["confident_95"].tolist() == (got["distance_high_95"] <= 2).tolist()
    assert 0 < got["confident_95"].sum() < len(got)  # 2 epochs: σ ~ 1 eV/atom, the interval decides
    confident = int(got["confident_95"].sum())
    assert f"{confident:,} of them stay -2.0 eV/atom below the hull" in out.stderr
