"""Real datasets are verified by sha256; bad user files stop with file, row and value."""

import gzip
import json

import numpy as np
import pytest

from datamodules.composition import CompositionDataModule
from datamodules.sources.readers import DataFileError, read_table
from datamodules.sources.registry import DATASETS, ChecksumError, data_file, dataset_files


def test_oqmd_published_split_sizes_and_hashes():
    files = dataset_files("oqmd_formation_enthalpy")
    sizes = {split: len(read_table(path)) for split, path in files.items()}
    assert sizes == {"train": 239190, "val": 51255, "test": 51255}


def test_ssub_is_read_from_qmpy():
    table = read_table(dataset_files("ssub")["all"])
    assert len(table) == 2090 and np.isfinite(table.targets).all()


def test_corrupted_cache_is_detected_and_deleted(tmp_path, monkeypatch):
    monkeypatch.setenv("MATDL_DATA_DIR", str(tmp_path))
    entry = DATASETS["ssub"]["all"]
    target = tmp_path / "raw" / entry.member
    target.parent.mkdir(parents=True)
    target.write_text("Fe2O3 -999\n")
    with pytest.raises(ChecksumError, match="sha256"):
        data_file(entry)
    assert not target.exists()


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("content,expected", [
    ("formula,target\nNaCl,-2.1\nFe2O3,abc\n", ["row 3", "'abc'", "not a number"]),
    ("formula,target\nNaCl,-2.1\nFe2O3,nan\n", ["row 3", "'nan'", "NaN"]),
    ("formula,target\nNaCl,-2.1\nFe2O3)),-1\n", ["row 3", "'Fe2O3))'", "malformed"]),
    ("formula,target\nNaCl,-2.1\nMgO,-3\nQz2O,-1\n", ["row 4", "'Qz2O'", "unknown element Qz"]),
    ("composition,value\nNaCl,-2.1\n", ["row 1", "missing column", "formula"]),
    ("", ["empty"]),
    ("formula,target\n", ["no data rows"]),
    ('[{"formula": "NaCl"}]', ["looks like JSON"]),
])
def test_bad_csv_names_file_row_value(tmp_path, content, expected):
    path = _write(tmp_path / "user.csv", content)
    dm = CompositionDataModule(dataset=str(path), split="random")
    with pytest.raises((DataFileError, ValueError)) as err:
        dm.prepare_data()
    message = str(err.value)
    assert str(path) in message
    for part in expected:
        assert part in message, message


def test_binary_file_named_csv(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(gzip.compress(b"formula,target\nNaCl,-2\n"))
    with pytest.raises(DataFileError, match="binary file"):
        CompositionDataModule(dataset=str(path), split="random").prepare_data()


def test_skip_bad_rows_counts_them_in_the_report(tmp_path):
    rows = ["formula,target"] + [f"{f},{-1 - i / 100}" for i, f in enumerate(
        ["NaCl", "MgO", "CaO", "SrO", "BaO", "LiF", "NaF", "KF", "RbF", "CsF", "TiN", "TiC", "ZrO2", "HfO2",
         "FeO", "NiO", "CuO", "ZnO", "Al2O3", "Ga2O3"])] + ["Qq,1", "NaBr,x", "Fe,0"]
    path = _write(tmp_path / "user.csv", "\n".join(rows) + "\n")
    dm = CompositionDataModule(dataset=str(path), split="random", skip_bad_rows=True, outlier_sigma=None)
    dm.prepare_data()
    dm.setup("fit")
    report = dm.cleaning_report
    assert report["rows_read"] == 23 and report["dropped_bad_rows"] == 2
    assert report["dropped_single_element"] == 1
    assert {r[0] for r in report["bad_rows"]} == {22, 23}
    assert sum(report["sizes"].values()) == 20


def test_jarvis_dft_3d_json(tmp_path):
    records = [{"jid": "JVASP-1", "formula": "NaCl", "formation_energy_peratom": -2.0},
               {"jid": "JVASP-2", "atoms": {"elements": ["Fe", "Fe", "O", "O", "O"]}, "formation_energy_peratom": -1.5},
               {"jid": "JVASP-3", "formula": "MgO", "formation_energy_peratom": "na"}]
    path = _write(tmp_path / "dft_3d.json", json.dumps(records))
    with pytest.raises(DataFileError, match=r"row 3: target is not a number: 'na'"):
        read_table(path)
    table = read_table(path, skip_bad=True)
    assert table.formulas == ["NaCl", "Fe2O3"] and len(table.problems) == 1


def test_mp_on_hull_join_is_exact_on_a_fixture(tmp_path):
    from datamodules.sources.derived import mp_on_hull

    (tmp_path / "e_form.csv").write_text("formula,target\nFe2O3,-1.5\nFe4O6,-1.7\nO3Fe2,-1.2\nNaCl,-2.1\n"
                                         "MgO,-3.0\nCu1Zn1,-0.1\nXx2O,-1.0\n")  # Xx: unparsable, skipped
    (tmp_path / "train.csv").write_text("formula,target\nFe2O3,0.0\nMgO,0.05\n")
    (tmp_path / "val.csv").write_text("formula,target\nClNa,0.0\nLiF,0.0\n")  # LiF: on the hull, no e_form row
    (tmp_path / "test.csv").write_text("formula,target\nZn2Cu2,0.0\n")
    got = mp_on_hull(tmp_path / "e_form.csv", [tmp_path / f"{s}.csv" for s in ("train", "val", "test")])
    # reduced compositions on both sides; the lowest-energy polymorph of each on-hull composition, file order
    assert got.to_dict("list") == {"formula": ["Fe4O6", "NaCl", "Cu1Zn1"], "target": [-1.7, -2.1, -0.1]}


def test_mp_on_hull_is_built_once_and_rebuilt_when_tampered():
    from datamodules.sources.derived import derived_file

    path = derived_file("mp_on_hull")
    text = path.read_text()
    assert text.startswith("formula,target\n") and text.count("\n") - 1 == 24_844  # crabnet 2.0.8's MP files
    path.write_text(text.replace("\n", "\nFe2O3,-9.9\n", 1))
    assert derived_file("mp_on_hull").read_text() == text
    dm = CompositionDataModule(dataset="mp_on_hull", split="kfold", n_folds=10, fold=0)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.cleaning_report["dropped_duplicate_composition"] == 0 and sum(dm.cleaning_report["sizes"].values()) > 24_000
