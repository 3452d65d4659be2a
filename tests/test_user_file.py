"""A user's own file, from the bytes on disk to a training run: Excel's byte-order mark and CRLF line ends
read like a plain file; a file with too few rows left after cleaning stops before training, naming the file
and counting every cleaning step."""

from __future__ import annotations

import json

import pytest

from cli.train import main
from conftest import run_module, task_args
from datamodules.composition import CompositionDataModule
from datamodules.composition_data import MIN_ROWS_PER_SPLIT
from datamodules.sources.readers import DataFileError, read_table

METALS = ["Li", "Na", "K", "Mg", "Ca", "Sr", "Ba", "Al", "Ti", "Zr", "Fe", "Ni", "Cu", "Zn"]
ANIONS = ["O", "F", "S", "N"]


def binary_rows(n: int) -> list[str]:
    """``n`` distinct binary compositions with a target each, as CSV lines."""
    formulas = [f"{m}{a}{k if k > 1 else ''}" for k in (1, 2, 3) for m in METALS for a in ANIONS]
    assert n <= len(formulas)
    return [f"{f},{-1 - (i % 17) / 10:.2f}" for i, f in enumerate(formulas[:n])]


@pytest.fixture(autouse=True)
def _own_data_cache(tmp_path, monkeypatch):
    """Parsed user files are cached under the data folder: this test's own, not the shared one."""
    monkeypatch.setenv("MATDL_DATA_DIR", str(tmp_path / "data"))


def _as_excel(text: str) -> bytes:
    """What Excel's "CSV UTF-8" writes: a byte-order mark and CRLF line ends."""
    return b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode()


def test_a_byte_order_mark_and_crlf_read_the_same_rows_as_a_plain_file(tmp_path):
    text = "\n".join(["formula,target,note", *[f"{r},\"a, b\"" for r in binary_rows(5)], "", "NaCl,-2.1,ok"]) + "\n"
    plain, excel = tmp_path / "plain.csv", tmp_path / "excel.csv"
    plain.write_text(text)
    excel.write_bytes(_as_excel(text))
    a, b = read_table(plain), read_table(excel)
    assert b.formulas == a.formulas and b.formulas[0] == "LiO" and b.formulas[-1] == "NaCl"
    assert (b.targets == a.targets).all() and (b.rows == a.rows).all() and b.rows.tolist() == [2, 3, 4, 5, 6, 8]
    # the other user formats too: SSUB lines and JARVIS JSON
    (tmp_path / "s.dat").write_bytes(_as_excel("Fe2O3 -1.5\nNaCl -2.1\n"))
    assert read_table(tmp_path / "s.dat").formulas == ["Fe2O3", "NaCl"]
    (tmp_path / "j.json").write_bytes(_as_excel(json.dumps([{"formula": "MgO", "formation_energy_peratom": -3.0}])))
    assert read_table(tmp_path / "j.json").formulas == ["MgO"]


def test_a_file_that_is_not_utf8_names_the_row(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("formula,target,note\nNaCl,-2.1,ok\nMgO,-3.0,25 °C\n".encode("cp1252"))
    with pytest.raises(DataFileError, match=r"latin1\.csv, row 3: not UTF-8 text \(byte b'\\xb0'\).*CSV UTF-8"):
        read_table(path)


@pytest.mark.slow
def test_training_on_an_excel_csv(workdir):
    path = workdir / "excel.csv"
    path.write_bytes(_as_excel("\n".join(["formula,target", *binary_rows(60)]) + "\n"))
    cli = main(task_args("elemnet", f"--data.init_args.dataset={path}", "--data.init_args.split=random",
                         "--data.init_args.train_fraction=1", "--data.init_args.batch_size=8",
                         "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"))
    assert cli.trainer.state.finished and cli.trainer.global_step == 2
    report = cli.datamodule.cleaning_report
    assert report["rows_read"] == 60 and sum(report["sizes"].values()) == 60
    assert "test/mae" in cli.trainer.callback_metrics


def test_too_few_rows_stop_before_training_with_the_count_of_every_step(tmp_path):
    rows = ["formula,target", *binary_rows(8), "LiO,-9.0", "Fe,0", "Cu,0", "Qq2O,-1", "NaCl,x"]
    path = tmp_path / "tiny.csv"
    path.write_text("\n".join(rows) + "\n")
    dm = CompositionDataModule(dataset=str(path), split="random", skip_bad_rows=True)
    with pytest.raises(DataFileError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert message.startswith(f"{path}: too few rows left after cleaning: train, val and test each need at least "
                              f"{MIN_ROWS_PER_SPLIT} rows, but val has 1, test has 1.\n"), message
    lines = [" ".join(line.split()) for line in message.splitlines()[1:]]
    assert lines == ["rows read 13", "dropped: bad rows 2", "dropped: single element 2",
                     "dropped: duplicate composition 1", "dropped: outlier (train/val) 0",
                     "left per split train 6, val 1, test 1",
                     "To fix: add rows to the data; or give validation a larger share (--data.init_args.val_fraction, "
                     "now 0.1); or give the test split a larger share (--data.init_args.test_fraction, now 0.1)."]
    assert dm.cleaning_report["sizes"] == {"train": 6, "val": 1, "test": 1} and not dm.splits
    # k folds and an empty file after cleaning say so too
    with pytest.raises(DataFileError, match=r"test has 1\.(.|\n)*use fewer folds \(--data.init_args.n_folds, now 8\)"):
        CompositionDataModule(dataset=str(path), split="kfold", n_folds=8, skip_bad_rows=True).setup("fit")
    (tmp_path / "elements.csv").write_text("formula,target\nFe,0\nCu,0\nO,0\n")
    with pytest.raises(DataFileError, match=r"elements\.csv: .* but train has 0, val has 0, test has 0\."):
        CompositionDataModule(dataset=str(tmp_path / "elements.csv"), split="random").setup("fit")


def test_a_small_training_subsample_keeps_the_minimum(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text("\n".join(["formula,target", *binary_rows(30)]) + "\n")
    dm = CompositionDataModule(dataset=str(path), split="random", train_fraction=0.02)  # configs/smoke.yaml's share
    dm.setup("fit")
    assert dm.cleaning_report["train_subsampled_to"] == MIN_ROWS_PER_SPLIT == len(dm.splits["train"])
    assert dm.cleaning_report["sizes"] == {"train": 24, "val": 3, "test": 3}  # the cleaned splits, as logged


@pytest.mark.slow
def test_the_cli_says_too_few_rows_in_a_message_and_exits_2(workdir):
    path = workdir / "tiny.csv"
    path.write_text("\n".join(["formula,target", *binary_rows(9)]) + "\n")
    out = run_module("cli.train", task_args("elemnet", f"--data.init_args.dataset={path}",
                                            "--data.init_args.split=random"), cwd=workdir)
    assert out.returncode == 2, out.stderr[-3000:]
    assert f"error: {path}: too few rows left after cleaning" in out.stderr and "left per split" in out.stderr
    assert "Traceback" not in out.stderr and "r2 score" not in out.stderr
