"""What a finished screen says: Table 3.3 counts and the held-out-system recovery (diss. 3.3.7, 3.3.9)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from materials.categories import CATEGORIES, categories, has_f_block
from materials.elements import ELEMNET_ELEMENTS
from materials.hull import HullIndex

ARITY_NAMES = {2: "binary", 3: "ternary", 4: "quaternary"}


def arity_summary(candidates: pd.DataFrame, compositions: dict[int, int], with_std: bool = False) -> pd.DataFrame:
    """Per arity: compositions scored, candidates, and chemical systems with at least one candidate; with
    ``with_std``, also the candidates still below the threshold at the upper end of their 95 % interval."""
    rows = []
    for k, n in sorted(compositions.items()):
        part = candidates[candidates["arity"] == k]
        rows.append({"arity": ARITY_NAMES.get(k, str(k)), "compositions": n, "candidates": len(part),
                     "systems_with_candidates": part["system"].nunique()})
        if with_std:
            rows[-1]["confident_95"] = int(part["confident_95"].sum())
    return pd.DataFrame(rows)


def table_3_3(candidates: pd.DataFrame, max_arity: int) -> tuple[pd.DataFrame, int]:
    """Systems with >= 1 candidate per category and arity, with the two most stable examples.

    Returns the table and the number of candidate systems left out for containing
    lanthanides or actinides (as the paper does).
    """
    best = candidates.sort_values("distance").drop_duplicates("system")  # most stable per system
    f_block = np.array([has_f_block(s.split("-")) for s in best["system"]], dtype=bool)
    best = best.loc[~f_block]
    cats = pd.Series([categories(set(s.split("-"))) for s in best["system"]], index=best.index, dtype=object)
    table = []
    for category in CATEGORIES:
        row: dict = {"category": category}
        chosen = best.loc[np.array([category in c for c in cats], dtype=bool)]
        for k in range(2, max_arity + 1):
            part = chosen[chosen["arity"] == k].sort_values("distance")
            row[f"{ARITY_NAMES.get(k, k)} count"] = len(part)
            row[f"{ARITY_NAMES.get(k, k)} examples"] = " ".join(part["formula"].head(2))
        table.append(row)
    return pd.DataFrame(table), int(f_block.sum())


def holdout_recovery(screened: pd.DataFrame, all_fractions: np.ndarray, all_energies: np.ndarray,
                     true_index: HullIndex, withheld_fractions: np.ndarray, system: list[str], tolerance: float = 0.05,
                     min_depth: float = 0.025) -> dict:
    """Which withheld stable compounds the screen's predicted hull recovers (Fig. 3.5).

    ``screened``: every screened composition of the system (columns ``fractions``
    as (n, 86) rows and ``predicted_dhf``); ``true_index``: the hull of all the data. A withheld compound is stable when it
    is on the hull of all the data; it is recovered when a vertex of the hull of
    the predictions lies within ``tolerance`` (L2 over fractions) of it. A smooth
    model puts nearly every grid point on its own hull, so a predicted vertex
    counts only when it lies at least ``min_depth`` eV/atom below the hull of the
    other predictions. A counted vertex with no stable compound within tolerance
    is spurious.
    """
    columns = [ELEMNET_ELEMENTS.index(s) for s in system]
    inside = ~np.delete(all_fractions, columns, axis=1).any(axis=1)
    sys_f, sys_e = all_fractions[inside], all_energies[inside]
    on_hull = (sys_e < 0) & (sys_e - true_index.hull_energy(sys_f) <= 1e-6)
    stable = sys_f[on_hull]
    withheld_keys = {tuple(np.round(r, 6)) for r in withheld_fractions}
    stable_withheld = np.array([tuple(np.round(r, 6)) in withheld_keys for r in stable], dtype=bool)

    pred_f = np.stack(screened["fractions"].to_numpy())
    pred_e = screened["predicted_dhf"].to_numpy()
    pred_index = HullIndex(pred_f, pred_e)
    vertex = np.flatnonzero((pred_e < 0) & (pred_e - pred_index.hull_energy(pred_f) <= 1e-9))
    depth = np.array([HullIndex(np.delete(pred_f, i, axis=0), np.delete(pred_e, i)).hull_energy(pred_f[i:i + 1])[0]
                      - pred_e[i] for i in vertex])
    vertices = pred_f[vertex[depth >= min_depth]]

    def nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if len(b) == 0:
            return np.full(len(a), np.inf)
        return np.sqrt(((a[:, None, columns] - b[None, :, columns]) ** 2).sum(axis=2)).min(axis=1)

    names = lambda f: [_formula_of(r, columns, system) for r in f]  # noqa: E731
    d_stable = nearest(stable, vertices)
    d_vertex = nearest(vertices, stable)
    return {
        "system": "-".join(system), "tolerance_l2": tolerance, "min_depth": min_depth,
        "stable_compounds": [{"formula": n, "withheld": bool(w), "nearest_predicted_vertex": float(d),
                              "recovered": bool(d <= tolerance)}
                             for n, w, d in zip(names(stable), stable_withheld, d_stable)],
        "predicted_vertices": [{"formula": n, "depth": float(h), "nearest_stable": float(d),
                                "spurious": bool(d > tolerance)}
                               for n, h, d in zip(names(vertices), depth[depth >= min_depth], d_vertex)],
        "recovered": int((d_stable[stable_withheld] <= tolerance).sum()),
        "withheld_stable": int(stable_withheld.sum()),
        "spurious": int((d_vertex > tolerance).sum()),
    }


def _formula_of(fractions: np.ndarray, columns: list[int], system: list[str]) -> str:
    from pymatgen.core import Composition

    amounts = {s: round(float(fractions[c]), 6) for s, c in zip(system, columns) if fractions[c] > 0}
    return Composition(amounts).get_integer_formula_and_factor(max_denominator=60)[0]


def recovery_markdown(report: dict) -> str:
    lines = [f"# Held-out {report['system']}: {report['recovered']} of {report['withheld_stable']} withheld "
             f"stable compounds recovered, {report['spurious']} spurious predicted vertices "
             f"(tolerance {report['tolerance_l2']} in fraction space; predicted vertices at least "
             f"{report['min_depth']} eV/atom deep)", "",
             "| stable compound (all data) | withheld | nearest predicted vertex | recovered |", "|---|---|---|---|"]
    lines += [f"| {s['formula']} | {s['withheld']} | {s['nearest_predicted_vertex']:.3f} | {s['recovered']} |"
              for s in report["stable_compounds"]]
    lines += ["", "| predicted hull vertex | depth eV/atom | nearest stable compound | spurious |", "|---|---|---|---|"]
    lines += [f"| {v['formula']} | {v['depth']:.3f} | {v['nearest_stable']:.3f} | {v['spurious']} |"
              for v in report["predicted_vertices"]]
    return "\n".join(lines) + "\n"


def binary_hull_plot(screened: pd.DataFrame, all_fractions: np.ndarray, all_energies: np.ndarray,
                     true_index: HullIndex, system: list[str], path) -> None:
    """Fig. 3.5(a): predicted ΔHf and hull against the hull of all the data, for a binary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = (ELEMNET_ELEMENTS.index(s) for s in system)
    inside = ~np.delete(all_fractions, [a, b], axis=1).any(axis=1)
    known_x, known_e = all_fractions[inside, b], all_energies[inside]
    pred_f = np.stack(screened["fractions"].to_numpy())
    pred_x, pred_e = pred_f[:, b], screened["predicted_dhf"].to_numpy()
    grid = np.linspace(0, 1, 401)
    line = np.zeros((len(grid), all_fractions.shape[1]))
    line[:, a], line[:, b] = 1 - grid, grid
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(known_x, known_e, s=10, c="0.6", label="OQMD (all, incl. withheld)")
    ax.plot(grid, true_index.hull_energy(line), "k-", label="OQMD hull")
    ax.scatter(pred_x, pred_e, s=14, c="tab:red", label="screen: predicted")
    ax.plot(grid, HullIndex(pred_f, pred_e).hull_energy(line), "r--", label="predicted hull")
    ax.set_xlabel(f"fraction of {system[1]} in {system[0]}-{system[1]}")
    ax.set_ylabel("ΔHf (eV/atom)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
