"""``make data``: fetch every registered dataset and element table from its PyPI package and verify it,
and build the derived datasets (exact joins of registered ones)."""

from __future__ import annotations

from datamodules.sources.derived import DERIVED, derived_file
from datamodules.sources.registry import DATASETS, ELEMENT_TABLES, data_dir, data_file, dataset_files


def main() -> None:
    for name in sorted(DATASETS):
        files = dataset_files(name)
        print(f"{name:26s} ok  " + ", ".join(f"{split}={path.stat().st_size / 1e6:.1f} MB" for split, path in files.items()))
    for name, entry in sorted(ELEMENT_TABLES.items()):
        print(f"{'element table ' + name:26s} ok  {data_file(entry).stat().st_size / 1e6:.1f} MB")
    for name in sorted(DERIVED):
        path = derived_file(name)
        print(f"{name:26s} ok  derived: {path.name}, {sum(1 for _ in open(path)) - 1:,} rows")
    print(f"all datasets verified by sha256 under {data_dir()}")


if __name__ == "__main__":
    main()
