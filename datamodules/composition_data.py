"""Cleaning and splitting composition datasets (diss. 3.2.1, 5.2.1), as pure NumPy.

The rules, in order: drop single-element entries (their formation energy is 0
by definition); keep the lowest target per distinct reduced composition, before
any split, so no composition is on two sides; split (the dataset's own split,
seeded random, k-fold, or a held-out chemical system); drop training and
validation rows outside mean ± kσ of the training targets. Test rows of a
published split are never touched, so numbers compare with published ones.
What is left must give every split ``MIN_ROWS_PER_SPLIT`` rows
(``require_rows_per_split``), or the run stops before training.
"""

from __future__ import annotations

import numpy as np

from datamodules.sources.readers import DataFileError, SettingError
from materials.composition import composition_keys
from materials.elements import ELEMENT_INDEX

SPLITS = ("train", "val", "test")
# R² and a standard deviation (outlier bounds, feature standardisation) need two values; with fewer, training
# fails deep inside torchmetrics ("Needs at least two samples to calculate r2 score") after minutes of work.
MIN_ROWS_PER_SPLIT = 2


def lowest_per_composition(keys: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Indices that keep, for each composition key, the row of lowest target."""
    order = np.lexsort((targets, keys))
    first = np.ones(len(order), dtype=bool)
    first[1:] = keys[order][1:] != keys[order][:-1]
    return np.sort(order[first])


def system_elements(system: str) -> list[str]:
    """``"Ti-O"`` or ``"Ti,O"`` as element symbols; an unknown symbol is an error."""
    symbols = [s.strip() for s in system.replace(",", "-").split("-") if s.strip()]
    unknown = [s for s in symbols if s not in ELEMENT_INDEX]
    if not symbols or unknown:
        raise SettingError(f"chemical system {system!r}: unknown element(s) {unknown}")
    return symbols


def chemical_system_mask(fractions: np.ndarray, system: str, rule: str = "only") -> np.ndarray:
    """Rows of a chemical system (``"Ti-O"``, ``"Na-Fe-Mn-O"``).

    ``only``: made only of the system's elements (its whole phase diagram, the
    3.3.7 Na-Fe-Mn-O test); ``contains``: containing every element of the
    system, with or without others (the 3.3.7 Ti-O test: "all entries that
    contain both Ti and O").
    """
    columns = [ELEMENT_INDEX[s] for s in system_elements(system)]
    if rule == "contains":
        return (fractions[:, columns] > 0).all(axis=1)
    if rule != "only":
        raise SettingError(f"unknown holdout rule {rule!r}: use only or contains")
    outside = np.ones(fractions.shape[1], dtype=bool)
    outside[columns] = False
    return ~(fractions[:, outside] > 0).any(axis=1)


def assign_splits(
    fractions: np.ndarray,
    method: str,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    n_folds: int = 10,
    fold: int = 0,
    holdout_system: str = "Ti-O",
    holdout_rule: str = "only",
) -> np.ndarray:
    """A split label per row: 0 train, 1 val, 2 test (rows already deduplicated).

    ``random``: test_fraction of rows to test, val_fraction of the rest to val.
    ``kfold``: fold ``fold`` of ``n_folds`` seeded folds is the test set.
    ``holdout_system``: every composition of the system (``holdout_rule``, see
    ``chemical_system_mask``) is the test set (diss. 3.3.7), the rest split
    randomly into train/val.
    """
    n = len(fractions)
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=np.int8)
    if method == "random":
        perm = rng.permutation(n)
        labels[perm[: int(round(test_fraction * n))]] = 2
    elif method == "kfold":
        if not 0 <= fold < n_folds:
            raise SettingError(f"fold {fold} is not in 0..{n_folds - 1}")
        folds = np.empty(n, dtype=np.int64)
        folds[rng.permutation(n)] = np.arange(n) % n_folds
        labels[folds == fold] = 2
    elif method == "holdout_system":
        held = chemical_system_mask(fractions, holdout_system, holdout_rule)
        if not held.any():
            raise SettingError(f"no composition in the data belongs to {holdout_system} (rule {holdout_rule!r})")
        labels[held] = 2
    else:
        raise SettingError(f"unknown split method {method!r}: use fixed, random, kfold or holdout_system")
    rest = np.flatnonzero(labels == 0)
    rest = rest[rng.permutation(len(rest))]
    labels[rest[: int(round(val_fraction * len(rest)))]] = 1
    return labels


def clean(
    fractions: np.ndarray,
    targets: np.ndarray,
    given_split: np.ndarray | None,
    split_kwargs: dict,
    outlier_sigma: float | None = 5.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Apply the cleaning rules; returns kept row indices, their split, and a report.

    ``given_split`` holds the published split label per row (or None to make one
    with ``assign_splits(**split_kwargs)``).
    """
    report: dict = {"rows_parsed": int(len(targets))}
    n_el = (fractions > 0).sum(axis=1)
    keep = np.flatnonzero(n_el > 1)
    report["dropped_single_element"] = int(len(targets) - len(keep))

    keys = composition_keys(fractions[keep])
    if given_split is not None:
        split_of = given_split[keep]
        # Deduplicate inside each published split; never move rows between them.
        kept_parts = []
        for s in range(3):
            part = np.flatnonzero(split_of == s)
            kept_parts.append(part[lowest_per_composition(keys[part], targets[keep][part])])
        chosen = np.sort(np.concatenate(kept_parts))
        report["dropped_duplicate_composition"] = int(len(keep) - len(chosen))
        keep, keys, split = keep[chosen], keys[chosen], split_of[chosen]
        shared = {}
        for a, b in ((0, 1), (0, 2), (1, 2)):
            both = np.intersect1d(keys[split == a], keys[split == b])
            shared[f"{SPLITS[a]}&{SPLITS[b]}"] = int(len(both))
        report["compositions_on_two_sides_of_published_split"] = shared
    else:
        chosen = lowest_per_composition(keys, targets[keep])
        report["dropped_duplicate_composition"] = int(len(keep) - len(chosen))
        keep = keep[chosen]
        split = assign_splits(fractions[keep], **split_kwargs)

    if outlier_sigma and (split == 0).any():  # no training rows: require_rows_per_split says so
        train_t = targets[keep][split == 0]
        mean, std = float(train_t.mean()), float(train_t.std())
        low, high = mean - outlier_sigma * std, mean + outlier_sigma * std
        t = targets[keep]
        outlier = ((t < low) | (t > high)) & (split != 2)
        report["outlier_bounds"] = [low, high]
        report["dropped_outlier"] = int(outlier.sum())
        keep, split = keep[~outlier], split[~outlier]
    report["sizes"] = {name: int((split == s).sum()) for s, name in enumerate(SPLITS)}
    return keep, split, report


def cleaning_steps(report: dict) -> list[str]:
    """The cleaning report as aligned lines, one per step, then the rows left per split (and the training
    subsample, ``train_fraction``)."""
    steps = [("rows read", report.get("rows_read")),
             ("dropped: bad rows", report.get("dropped_bad_rows")),
             ("dropped: single element", report.get("dropped_single_element")),
             ("dropped: duplicate composition", report.get("dropped_duplicate_composition")),
             ("dropped: outlier (train/val)", report.get("dropped_outlier"))]
    lines = [f"  {label:<32}{count:>10,}" for label, count in steps if count is not None]
    left = ", ".join(f"{name} {n:,}" for name, n in report["sizes"].items())
    lines.append(f"  {'left per split':<32}{left}")
    if "train_subsampled_to" in report:
        lines.append(f"  {'train subsampled to':<32}{report['train_subsampled_to']:>10,}")
    return lines


def require_rows_per_split(report: dict, source: str, hint: str = "",
                           minimum: int = MIN_ROWS_PER_SPLIT) -> None:
    """Stop, before any training, when a split has fewer than ``minimum`` rows after cleaning.

    The error names ``source`` (the file or dataset) and gives the count of every cleaning step.
    """
    short = {name: n for name, n in report["sizes"].items() if n < minimum}
    if not short:
        return
    has = ", ".join(f"{name} has {n}" for name, n in short.items())
    lines = [f"{source}: too few rows left after cleaning: train, val and test each need at least {minimum} rows, "
             f"but {has}.", *cleaning_steps(report)]
    raise DataFileError("\n".join(lines + ([hint] if hint else [])))
