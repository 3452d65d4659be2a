"""Find, fetch, verify (sha256) and read the real datasets and users' files."""

from datamodules.sources.readers import DataFileError, RawTable, read_table
from datamodules.sources.registry import DATASETS, dataset_files, fetch_all

__all__ = ["DATASETS", "DataFileError", "RawTable", "dataset_files", "fetch_all", "read_table"]
