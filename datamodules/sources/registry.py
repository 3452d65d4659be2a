"""The real datasets this project trains on, pinned by sha256.

They come from files shipped inside packages on PyPI (SPEC §1), fetched with
pip itself so no data server is contacted:

- ``crabnet==2.0.8`` (wheel): the OQMD and Materials Project CSVs of the
  CrabNet benchmark (Wang et al., npj Comput. Mater. 7, 77 (2021)), with
  CrabNet's own train/val/test split of OQMD formation enthalpy.
- ``qmpy==1.4.0`` (sdist): SSUB experimental formation enthalpies (SGTE).
- ``matminer==0.3.9`` (sdist): crystal structures with DFT targets, each row
  a pymatgen ``Structure`` dict literal: ``flla_2015`` (Faber, Lindmaa, von
  Lilienfeld, Armiento, Int. J. Quantum Chem. 115, 1094 (2015): 3,938
  Materials Project structures, formation energy and energy above hull),
  ``dielectric_constant`` (Petousis et al. 2017: 1,056, with band gaps) and
  ``elastic_tensor`` (de Jong et al. 2015: 1,181, with K_VRH and G_VRH).

Every archive and every extracted file is checked against its pinned hash
before use; a mismatch deletes the file and fails loudly.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """Root of the git-ignored data cache (``$MATDL_DATA_DIR`` or ``data/``)."""
    return Path(os.environ.get("MATDL_DATA_DIR", REPO_ROOT / "data"))


@dataclass(frozen=True)
class Archive:
    """A package file on PyPI that carries data."""

    filename: str
    sha256: str
    pip_args: tuple[str, ...]


@dataclass(frozen=True)
class DataFile:
    """One file inside an archive."""

    archive: Archive
    member: str
    sha256: str


CRABNET = Archive(
    "crabnet-2.0.8-py3-none-any.whl",
    "4901565abaa5b4cd1a7841b9de647a3906df21676b226a7abf972d113f92054a",
    ("crabnet==2.0.8", "--only-binary=:all:", "--python-version", "3.10"),
)
QMPY = Archive(
    "qmpy-1.4.0.tar.gz",
    "6547c16c0315ba08acd9ab9e73143a08101f76644b768b968a862d71a171ffce",
    ("qmpy==1.4.0", "--no-binary=:all:"),
)

MATMINER_039 = Archive(
    "matminer-0.3.9.tar.gz",
    "3faf9e83464f3d48f68a759bf476ad24da4c8c3e950c8f340cb917d3bb906400",
    ("matminer==0.3.9", "--no-binary=:all:"),
)

_B = "crabnet/data/benchmark_data/"
_SPLIT_HASHES = {
    "OQMD_Formation_Enthalpy": (
        "0b69cfcbffc31145790e48af13efed4f191e5687e01a19cda5ed7cee43deaf6d",
        "af138c2bfed3a8eb8fc2e202690fae94190e0e64258625ce1612df45298193d4",
        "773275807866c98cef1d36887e2f33cf3a3bb0428fc8faf6912cdcff19961172",
    ),
    "OQMD_Bandgap": (
        "8611a9f1f76ad06d846890d2234e6b37909abd941c156cdc339447bbcce3ada7",
        "7838750eb3b5b09ec296b0fbf194271f6588b4bcd4653e392aba6df04c645002",
        "59206d9cf13387a6cbf5a155f5b350043aee2f190663bb9baf97a6ee85e63d55",
    ),
    "OQMD_Energy_per_atom": (
        "fb10be65788bd6665d2418ce87d49834f1d3b65635a488a96cdc32667ea32d50",
        "d8f3478ebd3463447e3dd985c1e00529dbb5436d28cbf4af29e32a5169c71046",
        "abb63558c7df1fe4feba0c3b51a1da2d02347760601ef0bf4085d7df30bcd487",
    ),
    "OQMD_Volume_per_atom": (
        "d4e924912dd8b4bcf123ddf7822e50c47738028c2fc76024555b130c61d9d848",
        "ca3c843b42a8628d330c3bed198fce1de012ce544d1f5bf4c6a93ef7e9e0224d",
        "5b20ae50b3d28408ab87d153012b58a5eb4fb926392c836a094eac47c6dc2cef",
    ),
    "mp_e_hull": (
        "b3badcdc96484d4ae7c622bf098e75db628a23e89c48b44b0b0af8084e9bb7ae",
        "fbeba63de5701a2e300c52f5192673cbd7737e3b762f2d9a2d2056b982d7fe41",
        "236e6fe8f6406ef28a6805d26e508be0b4d45da1d22aebe779c93d3291c599a0",
    ),
}


def _split_files(folder: str) -> dict[str, DataFile]:
    hashes = _SPLIT_HASHES[folder]
    return {
        split: DataFile(CRABNET, f"{_B}{folder}/{split}.csv", h)
        for split, h in zip(("train", "val", "test"), hashes)
    }


#: name -> {split name or "all": file}. A dataset with train/val/test files
#: carries its published split; one with "all" is split by the datamodule.
DATASETS: dict[str, dict[str, DataFile]] = {
    "oqmd_formation_enthalpy": _split_files("OQMD_Formation_Enthalpy"),
    "oqmd_band_gap": _split_files("OQMD_Bandgap"),
    "oqmd_energy_per_atom": _split_files("OQMD_Energy_per_atom"),
    "oqmd_volume_per_atom": _split_files("OQMD_Volume_per_atom"),
    "mp_e_hull": _split_files("mp_e_hull"),
    "mp_e_form": {"all": DataFile(CRABNET, "crabnet/data/matbench/mp_e_form.csv",
                                  "90e895635c96447c5be4e9070d26f26e1b4d17925102a6597ae3c4d79c32555b")},
    "mp_gap": {"all": DataFile(CRABNET, "crabnet/data/matbench/mp_gap.csv",
                               "4084e584467e6f81ec8bf12c438eeb2c049ae39e11401bae694ef6a9983b9d9f")},
    # 1 metal / 0 non-metal per structure: the labels of the activation analysis (cli/analyze.py, Fig. 5.9)
    "mp_is_metal": {"all": DataFile(CRABNET, "crabnet/data/matbench/mp_is_metal.csv",
                                    "080afc38363fd7e0872fb04ae93a73fdecd0329408d007e8811ccd6e96b7e79a")},
    "ssub": {"all": DataFile(QMPY, "qmpy-1.4.0/qmpy/data/thermodata/ssub.dat",
                             "72d98cfe965e1e1972cae8cc483fbe6cb2e4da19150584e86d01b2707ae0533e")},
    # crystal structures (datamodules.structure): one file each, split by the datamodule
    "flla_2015": {"all": DataFile(MATMINER_039, "matminer-0.3.9/matminer/datasets/flla_2015.csv",
                                  "35b8dbc0b92f4dc7e219fd6606c3a27bee18a9618f376cfee1ff731e306210bb")},
    "dielectric_constant": {"all": DataFile(MATMINER_039, "matminer-0.3.9/matminer/datasets/dielectric_constant.csv",
                                            "ecbd410d33c95d5b05822cff6c7c0ba809a024b4ede3855ec5efc48d5e29ea77")},
    "elastic_tensor": {"all": DataFile(MATMINER_039, "matminer-0.3.9/matminer/datasets/elastic_tensor.csv",
                                       "f7a18c91fe5dcd51012e5b7e3a37f73aaee9087a036d61bdf9d6464b6fca51a6")},
}

#: element embedding tables (one row of numbers per element symbol), for nets that embed elements
ELEMENT_TABLES: dict[str, DataFile] = {
    # Tshitoyan et al., Nature 571, 95 (2019): 200-d word embeddings of the element names (as CrabNet uses them)
    "mat2vec": DataFile(CRABNET, "crabnet/data/element_properties/mat2vec.csv",
                        "5dcde1a0fe13040af99dbcb7b3d73eb022ffd085e7f598dce70844d0af83b137"),
}

#: the registered datasets of crystal structures (the rest are compositions)
STRUCTURE_DATASETS = ("flla_2015", "dielectric_constant", "elastic_tensor")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ChecksumError(RuntimeError):
    """A cached or downloaded file is not the file that was pinned."""


def _verified(path: Path, expected: str) -> bool:
    if not path.exists():
        return False
    actual = sha256_of(path)
    if actual != expected:
        path.unlink()
        raise ChecksumError(
            f"{path}: sha256 {actual} is not the pinned {expected}; the file was deleted, "
            "run `make data` to fetch it again"
        )
    return True


def fetch_archive(archive: Archive) -> Path:
    """The archive in the cache, fetched with ``pip download`` if missing."""
    target = data_dir() / "archives" / archive.filename
    if _verified(target, archive.sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, *archive.pip_args]
        result = subprocess.run(cmd, capture_output=True, text=True)
        fetched = Path(tmp) / archive.filename
        if result.returncode != 0 or not fetched.exists():
            raise RuntimeError(f"could not fetch {archive.filename} with `{' '.join(cmd)}`:\n{result.stderr[-2000:]}")
        actual = sha256_of(fetched)
        if actual != archive.sha256:
            raise ChecksumError(f"{archive.filename}: sha256 {actual} is not the pinned {archive.sha256}")
        shutil.move(str(fetched), target)
    return target


def _extract(archive_path: Path, member: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    if archive_path.suffix == ".whl":
        with zipfile.ZipFile(archive_path) as zf, zf.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        with tarfile.open(archive_path) as tf:
            src = tf.extractfile(member)
            if src is None:
                raise FileNotFoundError(f"{member} not in {archive_path}")
            with open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
    tmp.replace(target)


def data_file(entry: DataFile) -> Path:
    """The extracted, verified file of one registry entry."""
    target = data_dir() / "raw" / entry.member
    if not _verified(target, entry.sha256):
        _extract(fetch_archive(entry.archive), entry.member, target)
        if not _verified(target, entry.sha256):
            raise ChecksumError(f"{target} missing after extraction")
    return target


def dataset_files(name: str) -> dict[str, Path]:
    """Paths of a registered dataset's files, fetched and verified."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return {split: data_file(entry) for split, entry in DATASETS[name].items()}


def fetch_all() -> dict[str, dict[str, Path]]:
    """Fetch and verify every registered dataset and element table (``make data``)."""
    return {**{name: dataset_files(name) for name in DATASETS},
            **{f"element_table:{name}": {"all": data_file(entry)} for name, entry in ELEMENT_TABLES.items()}}
