"""make predict: a checkpoint or an MLflow model turns a formula list into predictions."""

import pandas as pd
import pytest

from cli.predict import main as predict
from cli.train import main as train
from conftest import search_runs, task_args

SSUB = ["--data.init_args.dataset=ssub", "--data.init_args.skip_bad_rows=true", "--data.init_args.split=random", "--data.init_args.train_fraction=1.0",
        "--trainer.max_epochs=2"]


@pytest.fixture
def trained(workdir):
    cli = train(task_args("elemnet", *SSUB))
    return workdir, cli.trainer.checkpoint_callback.best_model_path


def test_checkpoint_and_mlflow_model_agree(trained):
    workdir, ckpt = trained
    inp = workdir / "formulas.csv"
    pd.DataFrame({"formula": ["NaCl", "Fe2O3", "TiO2", "Li2O"], "note": list("abcd")}).to_csv(inp, index=False)
    from_ckpt = predict(["--model", ckpt, "--input", str(inp), "--output", str(workdir / "a.csv")])
    assert list(from_ckpt.columns) == ["formula", "note", "prediction"]
    assert pd.read_csv(workdir / "a.csv")["prediction"].notna().all()
    run_id = search_runs(workdir, "ssub").iloc[0].run_id
    from_mlflow = predict(["--model", f"runs:/{run_id}/model", "--input", str(inp), "--output", str(workdir / "b.csv")])
    pd.testing.assert_series_equal(from_ckpt["prediction"], from_mlflow["prediction"], atol=1e-5, rtol=1e-5)


def test_bad_formula_in_input_is_named_or_skipped(trained):
    workdir, ckpt = trained
    inp = workdir / "formulas.txt"
    inp.write_text("NaCl\nFe2Qq3\nMgO\n")
    with pytest.raises(ValueError, match=r"formulas.txt, row 2: unknown element Qq: 'Fe2Qq3'"):
        predict(["--model", ckpt, "--input", str(inp)])
    out = predict(["--model", ckpt, "--input", str(inp), "--skip_bad_rows"])
    assert out["prediction"].isna().tolist() == [False, True, False]
