"""``make bench-crystal``: how fast crystal graphs are built, batched and learned from, in structures/s.

On the real flla_2015 structures (matminer 0.3.9), through the same code as
``make train TASK=cgcnn``, on the CPU (all threads) and on the GPU when there is one:

- graph construction: neighbours within 8 Å, 12 nearest per atom
  (``materials.crystal_graph.neighbour_graph``), from parsed pymatgen structures;
- batching: ``PackedGraphs`` rows -> one PyG graph batch of 64 crystals;
- CGCNN training (forward, backward, Adam step) and inference, batch 64;
- the Ward 2017 Voronoi attributes of a few structures (matminer), for scale.

Results print as JSON and go to MLflow (experiment ``bench``).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from callbacks.mlflow_run import experiment_id


def _rate(count: int, fn) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def bench(n_structures: int, steps: int, voronoi: int) -> dict[str, float]:
    from datamodules.graphs import PackedGraphs
    from datamodules.sources.registry import dataset_files
    from datamodules.sources.structures import read_structures
    from materials.crystal_graph import atom_feature_table, atom_indices, neighbour_graph
    from materials.voronoi import voronoi_attributes
    from lightning_modules.nets import CGCNN

    table = read_structures(dataset_files("flla_2015")["all"], "formation_energy_per_atom", skip_bad=True)
    structures = [s for s in table.structures if all(site.specie.Z not in (2, 10) for site in s)][:n_structures]
    out = {"structures": len(structures), "mean_atoms": float(np.mean([len(s) for s in structures])),
           "cpu_threads": torch.get_num_threads()}
    graphs = []
    out["graph_construction_per_s"] = _rate(len(structures), lambda: graphs.extend(
        (atom_indices(s), *neighbour_graph(s, 8.0, 12)) for s in structures))
    ptr = lambda counts: np.concatenate([[0], np.cumsum(counts)])  # noqa: E731
    packed = PackedGraphs(atom_feature_table(), np.concatenate([g[0] for g in graphs]), ptr([len(g[0]) for g in graphs]),
                          np.concatenate([g[2] for g in graphs]), np.concatenate([g[1] for g in graphs]),
                          np.concatenate([g[3] for g in graphs]), ptr([len(g[1]) for g in graphs]),
                          table.targets[: len(structures)])
    order = torch.randperm(len(packed), generator=torch.Generator().manual_seed(0)).split(64)
    out["batching_per_s"] = _rate(len(packed), lambda: [packed[rows] for rows in order])
    batches = [packed[rows] for rows in order[:steps]]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        torch.manual_seed(0)
        net = CGCNN(n_features=atom_feature_table().shape[1]).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        moved = [(g.to(device), y.to(device)) for g, y in batches]
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        def train():
            for graph, y in moved:
                optimizer.zero_grad()
                torch.nn.functional.l1_loss(net(graph), y).backward()
                optimizer.step()
            sync()

        @torch.inference_mode()
        def infer():
            for graph, _ in moved:
                net(graph)
            sync()

        train()  # warm-up
        seen = sum(len(y) for _, y in moved)
        out[f"{device}_train_per_s"] = _rate(seen, train)
        out[f"{device}_inference_per_s"] = _rate(seen, infer)
    if voronoi:
        out["voronoi_attributes_per_s"] = _rate(voronoi, lambda: [voronoi_attributes(s) for s in structures[:voronoi]])
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=3936, help="flla_2015 structures to use (all: 3936)")
    parser.add_argument("--steps", type=int, default=20, help="training and inference batches of 64 to time")
    parser.add_argument("--voronoi", type=int, default=20, help="structures to featurise with matminer (0: skip)")
    opts = parser.parse_args(argv)
    results = bench(opts.structures, opts.steps, opts.voronoi)
    print(json.dumps(results, indent=2))
    import mlflow

    mlflow.set_experiment(experiment_id=experiment_id(mlflow.MlflowClient(), "bench"))
    with mlflow.start_run(run_name="bench-crystal"):
        mlflow.log_metrics({k: float(v) for k, v in results.items()})
    return results


if __name__ == "__main__":
    main()
