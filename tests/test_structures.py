"""Crystal structures: readers, crystal graphs against pymatgen, batching, CGCNN invariance, Voronoi attributes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from datamodules.graphs import PackedGraphs
from datamodules.sources.readers import DataFileError
from datamodules.sources.registry import dataset_files
from datamodules.sources.structures import read_structures
from materials.crystal_graph import IsolatedAtomError, atom_feature_table, atom_indices, neighbour_graph


@pytest.fixture(scope="module")
def flla():
    return read_structures(dataset_files("flla_2015")["all"], "formation_energy_per_atom", skip_bad=True)


def test_flla_is_read_whole(flla):
    assert len(flla) == 3938 and not flla.problems
    assert all(s.is_ordered for s in flla.structures[:50])
    assert np.isfinite(flla.targets).all()


@pytest.mark.parametrize("name,target,rows", [("dielectric_constant", "band_gap", 1056),
                                               ("elastic_tensor", "K_VRH", 1181)])
def test_the_other_matminer_structure_sets_are_read_whole(name, target, rows):
    """CIF text in the structure column; the dielectric file also has pandas' unnamed index column."""
    table = read_structures(dataset_files(name)["all"], target)
    assert len(table) == rows and np.isfinite(table.targets).all()


@pytest.mark.parametrize("index", [0, 1, 7, 100])
def test_edges_are_pymatgens_nearest_neighbours(flla, index):
    structure = flla.structures[index]
    center, neighbour, _, distance = structure.get_neighbor_list(r=6.0)
    ours = neighbour_graph(structure, cutoff=6.0, max_neighbors=10_000)
    # every pymatgen edge, and nothing else, when the neighbour count is not capped
    expected = sorted(zip(center.tolist(), neighbour.tolist(), distance.tolist()))
    _same_edges(expected, sorted(zip(ours[0].tolist(), ours[1].tolist(), ours[2].astype(float).tolist())))
    _same_edges(expected, _brute_force_edges(structure, 6.0))
    capped_center, _, capped_distance = neighbour_graph(structure, cutoff=6.0, max_neighbors=4)
    for atom in range(len(structure)):
        expected = np.sort(distance[center == atom])[:4]
        assert np.allclose(np.sort(capped_distance[capped_center == atom]), expected, atol=1e-5)


def _same_edges(a, b):
    assert len(a) == len(b)
    a, b = np.array(a), np.array(b)
    assert np.array_equal(a[:, :2], b[:, :2])
    assert np.allclose(a[:, 2], b[:, 2], atol=1e-5)


def _brute_force_edges(structure, cutoff):
    """Every periodic image within the cutoff, by enumerating lattice translations (independent of pymatgen)."""
    matrix = structure.lattice.matrix
    widths = abs(np.linalg.det(matrix)) / np.linalg.norm(np.cross(matrix[[1, 2, 0]], matrix[[2, 0, 1]]), axis=1)
    reach = np.ceil(cutoff / widths).astype(int) + 1
    shifts = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1).reshape(-1, 3)
    cart = structure.frac_coords @ matrix
    images = (structure.frac_coords[None, :, :] + shifts[:, None, :]) @ matrix  # (shift, atom, 3)
    edges = []
    for i, position in enumerate(cart):
        d = np.linalg.norm(images - position, axis=-1)
        for s, j in zip(*np.nonzero((d < cutoff) & (d > 1e-8))):
            edges.append((i, int(j), float(d[s, j])))
    return sorted(edges)


def test_isolated_atom_names_the_structure_and_cutoff():
    from pymatgen.core import Lattice, Structure

    lonely = Structure(Lattice.cubic(12.0), ["Na"], [[0, 0, 0]])
    with pytest.raises(IsolatedAtomError, match=r"box-of-na: atom 0 \(Na\) has no neighbour within the cutoff of 8 Å"):
        neighbour_graph(lonely, cutoff=8.0, name="box-of-na")


def test_element_without_features_is_named():
    from pymatgen.core import Lattice, Structure

    with pytest.raises(ValueError, match="Ne are outside the 86 elements"):
        atom_indices(Structure(Lattice.cubic(3.0), ["Ne"], [[0, 0, 0]]), "neon")


def _packed(structures, cutoff=8.0, k=12):
    graphs = [neighbour_graph(s, cutoff, k) for s in structures]
    atoms = [atom_indices(s) for s in structures]
    ptr = lambda counts: np.concatenate([[0], np.cumsum(counts)])  # noqa: E731
    return PackedGraphs(atom_feature_table(), np.concatenate(atoms), ptr([len(a) for a in atoms]),
                        np.concatenate([g[1] for g in graphs]), np.concatenate([g[0] for g in graphs]),
                        np.concatenate([g[2] for g in graphs]), ptr([len(g[0]) for g in graphs]),
                        np.zeros(len(structures)))


def test_packed_batches_equal_pygs_batching(flla):
    from torch_geometric.data import Batch, Data

    structures = flla.structures[:6]
    packed = _packed(structures)
    rows = [4, 1, 3]
    batch, y = packed[rows]
    singles = [packed[[r]][0] for r in rows]
    reference = Batch.from_data_list([Data(x=g.x, edge_index=g.edge_index, edge_attr=g.edge_attr) for g in singles])
    for key in ("x", "edge_index", "edge_attr", "batch"):
        assert torch.equal(getattr(batch, key), getattr(reference, key)), key
    assert y.shape == (3, 1)


def test_cgcnn_prediction_does_not_depend_on_the_unit_cell(flla):
    from lightning_modules.nets import CGCNN

    torch.manual_seed(0)
    net = CGCNN().eval()
    for structure in (flla.structures[1], flla.structures[7]):
        cells = [structure, structure * (2, 1, 1), structure * [[1, 1, 0], [0, 1, 0], [0, 0, 2]]]
        graphs = _packed(cells)
        with torch.no_grad():
            pred = net(graphs[list(range(len(cells)))][0]).squeeze(1)
        assert torch.allclose(pred, pred[0].expand_as(pred), atol=1e-5), pred


def _write_csv(path, rows, header="material_id,structure,target"):
    import csv

    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header.split(","))
        writer.writerows(rows)
    return path


def test_bad_structure_rows_name_file_row_and_value(tmp_path, flla):
    good = str(flla.structures[0].as_dict())
    disordered = flla.structures[0].copy()
    disordered.replace(0, {"Fe": 0.5, "Ni": 0.5})
    path = _write_csv(tmp_path / "s.csv", [["a", good, -1.0], ["b", str(disordered.as_dict()), -2.0]])
    with pytest.raises(DataFileError, match=r"s\.csv, row 3: structure 'b' cannot be used: site 0 is disordered"):
        read_structures(path, "target")
    path = _write_csv(tmp_path / "t.csv", [["a", good, -1.0], ["b", "{'lattice': [1, 2", -2.0]])
    with pytest.raises(DataFileError, match=r"t\.csv, row 3: structure 'b' cannot be used"):
        read_structures(path, "target")
    path = _write_csv(tmp_path / "u.csv", [["a", good, "oops"]])
    with pytest.raises(DataFileError, match=r"u\.csv, row 2: target is not a number: 'oops'"):
        read_structures(path, "target")
    table = read_structures(_write_csv(tmp_path / "v.csv", [["a", good, -1.0], ["b", "nonsense", -2.0]]), "target",
                            skip_bad=True)
    assert len(table) == 1 and table.problems[0][0] == 3


def test_cif_folder_and_json_formats_give_the_same_structures(tmp_path, flla):
    from pymatgen.io.cif import CifWriter

    structures = flla.structures[:3]
    folder = tmp_path / "cifs"
    folder.mkdir()
    for i, s in enumerate(structures):
        CifWriter(s).write_file(folder / f"x{i}.cif")
    _write_csv(folder / "targets.csv", [[f"x{i}", float(i)] for i in range(3)], header="id,target")
    matbench = tmp_path / "mb.json"
    matbench.write_text(json.dumps({"index": ["a", "b", "c"], "columns": ["structure", "e_form"],
                                    "data": [[s.as_dict(), float(i)] for i, s in enumerate(structures)]}))
    jarvis = tmp_path / "jv.json"
    jarvis.write_text(json.dumps([{"jid": f"JVASP-{i}", "e_form": float(i), "atoms": {
        "lattice_mat": s.lattice.matrix.tolist(), "coords": s.frac_coords.tolist(),
        "elements": [site.specie.symbol for site in s], "cartesian": False}} for i, s in enumerate(structures)]))
    for table in (read_structures(folder, "target"), read_structures(matbench, "e_form"),
                  read_structures(jarvis, "e_form")):
        assert len(table) == 3 and list(table.targets) == [0.0, 1.0, 2.0]
        for ours, reference in zip(table.structures, structures):
            assert ours.composition == reference.composition
            assert np.allclose(ours.lattice.abc, reference.lattice.abc, atol=1e-4)
    disordered = structures[0].copy()
    disordered.replace(0, {"Fe": 0.5, "Ni": 0.5})
    CifWriter(disordered).write_file(folder / "x0.cif")
    with pytest.raises(DataFileError, match=r"targets\.csv, row 2: structure 'x0' cannot be used: site 0 is disordered"):
        read_structures(folder, "target")


def test_duplicates_are_dropped_before_the_split_and_polymorphs_marked(tmp_path, flla, monkeypatch):
    from datamodules.structure import StructureDataModule

    monkeypatch.setenv("MATDL_DATA_DIR", str(tmp_path / "data"))
    # 40 crystals, the first 5 repeated (one with a rotated, shifted copy), TiO2 polymorphs among them
    picks = list(range(40))
    rows = [[flla.ids[i], str(flla.structures[i].as_dict()), flla.targets[i]] for i in picks]
    moved = flla.structures[0].copy()
    moved.translate_sites(list(range(len(moved))), [0.1, 0.2, 0.3])
    rows += [[f"dup{i}", r[1], r[2]] for i, r in enumerate(rows[1:5])] + [["dup-moved", str(moved.as_dict()), -9.0]]
    path = _write_csv(tmp_path / "d.csv", rows)
    dm = StructureDataModule(dataset=str(path), target_column="target", split="random", test_fraction=0.25)
    dm.setup()
    assert dm.cleaning_report["dropped_duplicate_structure"] == 5
    assert sum(dm.cleaning_report["sizes"].values()) == 40
    kept_targets = torch.cat([dm.splits[s].y for s in ("train", "val", "test")]).squeeze(1)
    assert -9.0 in kept_targets  # the lower target of the duplicate pair is the one kept
    formulas = np.concatenate(list(dm.formulas.values()))
    repeated = {f for f in formulas if (formulas == f).sum() > 1}
    assert set(dm.formulas["test"][dm.polymorph_mask("test")]) == repeated & set(dm.formulas["test"])


def test_structure_cache_is_verified_and_rebuilt(tmp_path, flla, monkeypatch):
    from datamodules.structure_data import cache_path, parsed_structures
    from datamodules.sources.registry import sha256_of

    monkeypatch.setenv("MATDL_DATA_DIR", str(tmp_path / "data"))
    path = _write_csv(tmp_path / "c.csv", [[flla.ids[i], str(flla.structures[i].as_dict()), flla.targets[i]]
                                           for i in range(5)])
    first = parsed_structures(path, "target")
    cache = cache_path(path, sha256_of(path), "target", "material_id", False, 8.0, 12)
    cache.write_bytes(cache.read_bytes()[:200])  # torn
    again = parsed_structures(path, "target")
    assert np.array_equal(first["edge_dist"], again["edge_dist"])
    assert np.load(cache)["ids"].tolist() == flla.ids[:5]


def test_voronoi_attributes_are_matminers(flla):
    from materials.voronoi import N_VORONOI, voronoi_labels, ward2017_featurizer
    from datamodules.structure_data import parsed_structures, voronoi_table

    assert len(voronoi_labels()) == N_VORONOI
    file = dataset_files("flla_2015")["all"]
    parsed = parsed_structures(file, "formation_energy_per_atom", skip_bad=True)
    cached = voronoi_table(file, parsed, "formation_energy_per_atom", rows=np.array([3, 17]), n_jobs=1)
    for row, values in zip((3, 17), cached):
        structure = flla.structures[flla.ids.index(parsed["ids"][row])]
        assert np.allclose(values, ward2017_featurizer().featurize(structure), equal_nan=True)


def test_voronoi_attributes_do_not_depend_on_the_cell_a_site_is_written_in(flla):
    """Materials Project's CdSe (mp-1070) has a Cd at c = -3.1e-05, just outside its cell: pymatgen's
    Voronoi polyhedra found no neighbours for it until the sites were wrapped into the cell."""
    from materials.voronoi import voronoi_attributes, ward2017_featurizer, wrapped_into_cell

    cdse = flla.structures[flla.ids.index("mp-1070")]
    assert (cdse.frac_coords < 0).any()
    values = voronoi_attributes(cdse)
    assert np.isfinite(values).all()
    assert np.allclose(values, ward2017_featurizer().featurize(wrapped_into_cell(cdse)))
    moved = cdse.copy()
    moved.translate_sites([0, 2], [1, 0, -2], frac_coords=True, to_unit_cell=False)  # same crystal
    assert np.allclose(voronoi_attributes(moved), values)
    assert np.all((wrapped_into_cell(moved).frac_coords >= 0) & (wrapped_into_cell(moved).frac_coords < 1))


def test_a_crystal_without_voronoi_attributes_is_counted_in_the_cleaning_report(tmp_path, flla, monkeypatch):
    """PbS (mp-557719) gives an infinite Voronoi vertex even wrapped: its attributes are imputed and counted."""
    from datamodules.structure import StructureDataModule

    monkeypatch.setenv("MATDL_DATA_DIR", str(tmp_path / "data"))
    picks = [flla.ids.index(i) for i in ("mp-557719", "mp-1070")] + list(range(6))
    rows = [[flla.ids[i], str(flla.structures[i].as_dict()), flla.targets[i]] for i in picks]
    dm = StructureDataModule(dataset=str(_write_csv(tmp_path / "d.csv", rows)), target_column="target",
                             representation="magpie_voronoi", split="random", test_fraction=0.25, n_jobs=1)
    dm.setup()
    assert sum(dm.cleaning_report["voronoi_failed"].values()) == 1
    x = torch.cat([dm.splits[s].tensors[0] for s in ("train", "val", "test")])
    assert torch.isfinite(x).all()


def test_polymorph_metrics_score_the_right_rows(workdir):
    """test/mae_polymorphs and test/mae_unique_formula equal the errors of the marked test rows, computed
    here from the module's test predictions (several test batches)."""
    from cli.train import main
    from conftest import task_args

    cli = main(task_args("irnet_flla", "--data.init_args.limit=400", "--data.init_args.eval_batch_size=8"))
    pred, true = cli.model.last_test_outputs
    mask = cli.datamodule.polymorph_mask("test")
    err = (pred - true).abs().numpy()
    metrics = cli.trainer.callback_metrics
    assert mask.any() and (~mask).any()
    assert float(metrics["test/mae_polymorphs"]) == pytest.approx(err[mask].mean(), rel=1e-5)
    assert float(metrics["test/mae_unique_formula"]) == pytest.approx(err[~mask].mean(), rel=1e-5)
    assert float(metrics["test/n_polymorphs"]) == mask.sum()
