"""make predict: a checkpoint or an MLflow model turns a formula list into predictions; every mistake in what
the user gives is one paragraph naming the file, row and value, exit status 2, and no output file."""

import subprocess
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from cli.predict import main as predict
from cli.train import main as train
from conftest import REPO, run_module, task_args
from materials.composition import formula_from_fractions

# runs the real commands end to end: `make test` (CI), not `make test-fast`
pytestmark = pytest.mark.slow

SSUB = ["--data.init_args.dataset=ssub", "--data.init_args.skip_bad_rows=true", "--data.init_args.split=random", "--data.init_args.train_fraction=1.0",
        "--trainer.max_epochs=2"]
COLUMN = "formation_enthalpy_eV_per_atom"  # SSUB's target: experimental formation enthalpy


@dataclass
class Trained:
    workdir: Path
    ckpt: str
    run_id: str
    train_formula: str  # in the model's training split
    test_formula: str  # in its test split only


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short real run on SSUB for the whole file, its model registered as version 1 with alias ``champion``."""
    workdir = tmp_path_factory.mktemp("predict")
    (workdir / "mlruns").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir}/mlruns/mlflow.db")
        cli = train(task_args("elemnet", *SSUB))
        mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlruns/mlflow.db")
        run_id = cli.trainer.logger.run_id
        version = mlflow.register_model(f"runs:/{run_id}/model", "ssub-elemnet").version
        mlflow.MlflowClient().set_registered_model_alias("ssub-elemnet", "champion", version)
        compositions = cli.datamodule.compositions
        yield Trained(workdir, cli.trainer.checkpoint_callback.best_model_path, run_id,
                      formula_from_fractions(compositions["train"][0][:1])[0],
                      formula_from_fractions(compositions["test"][0][:1])[0])


def sources(t: Trained) -> dict[str, str]:
    return {"checkpoint": t.ckpt, "run": f"runs:/{t.run_id}/model", "version": "models:/ssub-elemnet/1",
            "alias": "models:/ssub-elemnet@champion", "alias as a suffix": "models:/ssub-elemnet/champion"}


def refused(capsys, args: list[str]) -> str:
    """The message of a run that must stop with exit status 2."""
    with pytest.raises(SystemExit) as stop:
        predict(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return " ".join(err.split())


def test_every_model_source_predicts_the_same_named_column_with_run_id_and_training_flag(trained):
    t = trained
    inp = t.workdir / "formulas.csv"
    formulas = ["NaCl", "Fe2O3", t.train_formula, t.test_formula, "XePuTc"]  # the last: a system none has
    pd.DataFrame({"formula": formulas, "note": list("abcde")}).to_csv(inp, index=False)
    tables = {}
    for kind, model in sources(t).items():
        out = t.workdir / f"{kind}.csv"
        tables[kind] = predict(["--model", model, "--input", str(inp), "--output", str(out)])
        written = pd.read_csv(out)
        assert list(written.columns) == ["formula", "note", COLUMN, "run_id", "in_training_data",
                                         "nearest_training_distance", "chemical_system_seen", "extrapolation"], kind
        assert written[COLUMN].notna().all() and (written["run_id"] == t.run_id).all(), kind
        assert written["in_training_data"].tolist()[2:] == [True, False, False], kind
        # a training composition is at distance 0 in a seen system, not flagged; the unseen system is
        assert written["nearest_training_distance"][2] == 0 and written["chemical_system_seen"][2], kind
        assert not written["extrapolation"][2] and written["extrapolation"][4], kind
        assert not written["chemical_system_seen"][4] and written["nearest_training_distance"][4] > 0.5, kind
    for kind, table in tables.items():
        pd.testing.assert_frame_equal(table, tables["checkpoint"], atol=1e-5, rtol=1e-5, obj=kind)


def test_without_the_training_data_here_the_training_flag_is_left_out_with_a_note(trained, capsys, monkeypatch):
    inp = trained.workdir / "one.txt"
    inp.write_text("NaCl\n")
    monkeypatch.setenv("MATDL_DATA_DIR", str(trained.workdir / "no-data"))  # a machine without the dataset
    out = predict(["--model", trained.ckpt, "--input", str(inp)])
    assert list(out.columns) == ["formula", COLUMN, "run_id"]
    assert ("no in_training_data or extrapolation columns: the training data (ssub) are not on this machine"
            in capsys.readouterr().err)


@pytest.mark.parametrize("kind", ["checkpoint", "run", "alias"])
@pytest.mark.parametrize("formula,reason", [
    ("Na0Cl", "malformed formula (amount 0 of Na is not positive)"),
    ("Na-1Cl", "malformed formula (amount -1 of Na is not positive)"),
    ("Fe2Qq3", "unknown element Qq"),
])
def test_a_bad_formula_is_named_with_its_row_for_every_model_source(trained, capsys, kind, formula, reason):
    inp = trained.workdir / "formulas.txt"
    inp.write_text(f"NaCl\n{formula}\nMgO\n")
    inp.with_suffix(".predictions.csv").unlink(missing_ok=True)  # the tests share one folder
    message = refused(capsys, ["--model", sources(trained)[kind], "--input", str(inp)])
    assert f"formulas.txt, row 2: {reason}: {formula!r}. Correct it, or add --skip_bad_rows" in message
    assert not inp.with_suffix(".predictions.csv").exists()


@pytest.mark.parametrize("kind", ["checkpoint", "run", "version"])
def test_skip_bad_rows_predicts_the_rest_and_lists_the_skipped_for_every_model_source(trained, capsys, kind):
    inp = trained.workdir / "formulas.csv"
    bad = ["Na0Cl", "Qq2O", "Na-1Cl", "", "Fe2O3)", "HeO", "Xx"]
    inp.write_text("formula,note\nNaCl,a\n\n" + "".join(f"{f},b\n" for f in bad) + "MgO,c,extra\nMgO,d\n")
    out = predict(["--model", sources(trained)[kind], "--input", str(inp), "--skip_bad_rows"])
    assert out[COLUMN].notna().tolist() == [True] + [False] * 8 + [True]
    assert out["in_training_data"].isna().tolist() == [False] + [True] * 8 + [False]
    err = " ".join(capsys.readouterr().err.split())
    # the blank line 3 is no row; the first five bad rows are shown, with their reasons
    assert (f"skipped 8 of 10 rows of {inp} (their prediction is left empty): "
            "row 4: malformed formula (amount 0 of Na is not positive): 'Na0Cl'; row 5: unknown element Qq: 'Qq2O'; "
            "row 6: malformed formula (amount -1 of Na is not positive): 'Na-1Cl'; "
            "row 7: empty or non-text formula: ''; "
            "row 8: malformed formula") in err
    assert "; and 3 more" in err
    assert pd.read_csv(inp.with_suffix(".predictions.csv"))[COLUMN].notna().sum() == 2


def test_skip_bad_rows_with_no_good_row_is_refused(trained, capsys):
    inp = trained.workdir / "bad.txt"
    inp.write_text("Na0Cl\nQq\n")
    message = refused(capsys, ["--model", trained.ckpt, "--input", str(inp), "--skip_bad_rows"])
    assert f"INPUT {inp}: none of its 2 rows holds a formula the model can use: row 1: malformed formula" in message
    assert not inp.with_suffix(".predictions.csv").exists()


BAD_INPUTS = {  # file name, content (None: no file), what the message says
    "missing": ("nowhere.csv", None, "INPUT {inp} does not exist"),
    "empty": ("empty.csv", b"", "INPUT {inp} is empty; it should be a .csv file with a formula column"),
    "blank list": ("blank.txt", b"\n \n", "INPUT {inp} is empty"),
    "header only": ("header.csv", b"formula,note\n", "INPUT {inp} has a header but no rows of formulas"),
    "no formula column": ("nocol.csv", b"NaCl\nMgO\n", "INPUT {inp}, row 1: no formula column; the header is ['NaCl']"),
    "spreadsheet": ("sheet.xlsx", b"PK\x03\x04rest", "INPUT {inp} is a .xlsx file; it should be a .csv file"),
    "zip as csv": ("zipped.csv", b"PK\x03\x04rest", "INPUT {inp} is a binary file"),
    "latin-1": ("latin.csv", "formula\nNaCl\nFe2O3 °\n".encode("latin-1"),
                "INPUT {inp}, row 3: not UTF-8 text (byte b'\\xb0')"),
    "folder": ("folder", "mkdir", "INPUT {inp} is a folder; it should be a .csv file with a formula column"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_a_bad_input_file_is_named(trained, capsys, case):
    name, content, expected = BAD_INPUTS[case]
    inp = trained.workdir / name
    if content == "mkdir":
        inp.mkdir(exist_ok=True)
    elif content is not None:
        inp.write_bytes(content)
    message = refused(capsys, ["--model", trained.ckpt, "--input", str(inp)])
    assert expected.format(inp=inp) in message
    assert not inp.with_suffix(".predictions.csv").exists()


def test_a_bad_output_path_is_named(trained, capsys):
    inp = trained.workdir / "ok.txt"
    inp.write_text("NaCl\n")
    nowhere = trained.workdir / "no" / "out.csv"
    message = refused(capsys, ["--model", trained.ckpt, "--input", str(inp), "--output", str(nowhere)])
    assert f"OUTPUT {nowhere}: the folder {nowhere.parent} does not exist" in message
    message = refused(capsys, ["--model", trained.ckpt, "--input", str(inp), "--output", str(inp)])
    assert f"OUTPUT {inp} is the input file; name another file" in message
    assert inp.read_text() == "NaCl\n"


def test_a_bad_model_source_is_named(trained, capsys):
    t = trained
    inp = t.workdir / "ok.txt"
    inp.write_text("NaCl\n")
    not_a_model = t.workdir / "notes.ckpt"
    not_a_model.write_text("hello")
    cases = {
        str(t.workdir / "gone.ckpt"):
            f"CKPT {t.workdir / 'gone.ckpt'} does not exist; the newest checkpoints of elemnet: outputs/elemnet/",
        str(t.workdir): f"CKPT {t.workdir} is a folder, not a checkpoint file; give a file in it, e.g. ",
        str(not_a_model): f"CKPT {not_a_model} is not a checkpoint of a composition model of this project (",
        "runs:/0123456789abcdef/model": "CKPT runs:/0123456789abcdef/model: MLflow cannot load this model (",
        "runs:/0123456789abcdef": "CKPT 'runs:/0123456789abcdef' is not a run's model: write runs:/<run_id>/model",
        "models:/no-such-model/1": "CKPT models:/no-such-model/1: MLflow cannot load this model (",
    }
    for model, expected in cases.items():
        assert expected in refused(capsys, ["--task", "elemnet", "--model", model, "--input", str(inp)]), model
    assert not inp.with_suffix(".predictions.csv").exists()


def test_missing_arguments_give_the_usage(capsys):
    message = refused(capsys, ["--input", "formulas.csv"])
    assert message.startswith("predict: missing CKPT. CKPT (--model) is the trained model: a checkpoint file")
    message = refused(capsys, [])
    assert "missing CKPT and INPUT" in message and "runs:/<run_id>/model" in message
    assert "models:/<name>/<version>" in message
    assert ".txt file with one formula per line" in message and "Example: make predict TASK=elemnet CKPT=" in message


def test_make_predict_without_ckpt_and_input_prints_the_usage_not_a_traceback():
    done = subprocess.run(["make", "predict", "TASK=elemnet"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "predict: missing CKPT and INPUT." in done.stderr and "Example: make predict TASK=elemnet" in done.stderr


def test_the_command_line_exits_2_without_a_traceback(trained):
    args = ["--model", trained.ckpt, "--input", "absent.csv"]
    done = run_module("cli.predict", args, cwd=trained.workdir, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("predict: INPUT absent.csv does not exist")
