"""``make bench-ebsd``: OMNet against dictionary indexing (DI) on this machine (CPU, and a GPU when present).

1. Accuracy at equal dictionary (with ``--ckpt``, a checkpoint of ``make train TASK=omnet``): the net and
   kikuchipy DI (NCC) against the run's dictionary (the checkpoint's, else ``--semi_edge_steps``), mean and
   median disorientation on the same noisy test patterns (the paper: OMNet 0.548° vs DI 0.652°).
2. Inference patterns/s of both on the same device and patterns (the net in its inference form, batch
   normalisation folded and channels-last, as a run predicts; ``…_as_trained``: the module as it trains; and
   the net's training samples/s, batch 64, which shows whether the CPU threads are starved, see
   docs/results/ebsd.md): the net of the checkpoint (or the CPU default OMNet), the paper-size OMNet (~200M
   parameters), DI against the run's dictionary and against
   others (``--dictionary_steps``, default N = 25 and N = 50: 41,625 patterns, simulated once into the cache);
   DI's cost grows with the dictionary, so the paper's N = 100 + 50 (374,852) rate is extrapolated linearly
   from the measured sizes and printed as such. Target: OMNet ≥ 10× DI at N = 50. Training samples/s in
   float32 and under bf16 autocast, beside this CPU's float32 and bf16 GEMM rates (2048², all threads).
3. Disorientation-loss throughput in pairs/s (forward + backward of the mean over 24 symmetry operators,
   float32): target ≥ 1e6 pairs/s on this CPU; and the largest deviation from orix's ``angle_with`` on 120k
   pairs (100k random, 20k within 0.06° of each other), float32 and float64.

Results print and go to the MLflow experiment ``bench``.
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np
import torch

from callbacks.mlflow_run import experiment_id
from materials.orientations import disorientation, random_quaternions

PAPER_DICTIONARY = 333_227 + 41_625


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def loss_pairs_per_s(device: str, n: int, repeats: int = 3) -> dict[str, float]:
    """Pairs/s of the mean disorientation, forward only and forward + backward (best of ``repeats``)."""
    g = torch.Generator().manual_seed(0)
    q1, q2 = (random_quaternions(n, g).float().to(device) for _ in range(2))
    out = {}
    for method in ("atan2", "arccos"):
        best_fwd = best_both = float("inf")
        for _ in range(repeats):
            pred = q1.clone().requires_grad_()
            _sync(device)
            t0 = time.perf_counter()
            loss = disorientation(pred, q2, method=method).mean()
            _sync(device)
            t1 = time.perf_counter()
            loss.backward()
            _sync(device)
            best_fwd, best_both = min(best_fwd, t1 - t0), min(best_both, time.perf_counter() - t0)
        out[f"loss_{method}_forward_pairs_per_s"] = n / best_fwd
        out[f"loss_{method}_pairs_per_s"] = n / best_both
    return out


def deviation_from_orix(n: int = 100_000) -> dict[str, float]:
    """Largest |ours - orix ``angle_with``| in degrees on ``n`` random pairs and ``n // 5`` pairs within 0.06°."""
    from orix.quaternion import Orientation, symmetry

    from materials.orientations import quaternion_multiply

    g = torch.Generator().manual_seed(1)
    q1, q2 = random_quaternions(n, g), random_quaternions(n, g)
    axes = torch.randn(n // 5, 3, generator=g, dtype=torch.float64)
    half = torch.rand(n // 5, generator=g, dtype=torch.float64) * 5e-4
    near = torch.cat([torch.cos(half)[:, None], torch.sin(half)[:, None] * axes / axes.norm(dim=1, keepdim=True)], 1)
    q1, q2 = torch.cat([q1, q1[: n // 5]]), torch.cat([q2, quaternion_multiply(near, q1[: n // 5])])
    reference = Orientation(q1.numpy(), symmetry.Oh).angle_with(Orientation(q2.numpy(), symmetry.Oh), degrees=True)
    return {f"disorientation_max_deviation_from_orix_deg_{name}":
            float(np.abs(torch.rad2deg(disorientation(q1.to(dtype), q2.to(dtype))).double().numpy() - reference).max())
            for name, dtype in (("float32", torch.float32), ("float64", torch.float64))}


def net_patterns_per_s(net, patterns: torch.Tensor, device: str, batch: int) -> float:
    net = net.to(device).eval()
    with torch.inference_mode():
        net(patterns[:batch, None].to(device).float() / 255)
        _sync(device)
        t0 = time.perf_counter()
        for first in range(0, len(patterns), batch):
            net(patterns[first:first + batch, None].to(device).float() / 255)
        _sync(device)
    return len(patterns) / (time.perf_counter() - t0)


def net_train_samples_per_s(net, patterns: torch.Tensor, device: str, batch: int = 64, steps: int = 20,
                            dtype: torch.dtype = torch.float32) -> float:
    """Adam steps of the MDE loss on real patterns (after two warm-up steps), samples/s; ``dtype`` bfloat16
    runs the net under autocast as ``bf16-mixed`` training does (the loss in float32)."""
    from materials.orientations import REPRESENTATIONS

    rep = REPRESENTATIONS[net.representation]
    batch = min(batch, len(patterns))
    net = net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), 1e-4)
    x = patterns[:batch, None].to(device).float() / 255
    q = random_quaternions(batch, torch.Generator().manual_seed(0)).float().to(device)
    for step in range(steps + 2):
        if step == 2:
            _sync(device)
            t0 = time.perf_counter()
        optimizer.zero_grad()
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            out = net(x)
        disorientation(rep.decode(out.float()), q).mean().backward()
        optimizer.step()
    _sync(device)
    return steps * batch / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=None, help="OMNet checkpoint (make train TASK=omnet); else untrained nets")
    ap.add_argument("--semi_edge_steps", type=int, nargs="+", default=None,
                    help="dictionary without --ckpt (default: the CPU default of configs/tasks/omnet.yaml)")
    ap.add_argument("--dictionary_steps", type=int, nargs="*", default=[25, 50],
                    help="cubochoric N of the other DI dictionaries timed beside the run's (none: skip)")
    ap.add_argument("--n_test", type=int, default=1000, help="test patterns (without --ckpt)")
    ap.add_argument("--batch", type=int, default=64, help="net inference batch (64: fastest on 2 AVX2 cores)")
    ap.add_argument("--pairs", type=int, default=1_000_000, help="pairs for the loss throughput")
    ap.add_argument("--paper_net", type=int, default=1, help="also time the ~200M-parameter paper OMNet (0: skip)")
    args = ap.parse_args(argv)

    from callbacks.ebsd_baselines import dictionary_index, disorientation_degrees, net_quaternions
    from datamodules.ebsd import EBSDDataModule
    from datamodules.simulate.ebsd import master_pattern
    from lightning_modules.nets import OMNet
    from lightning_modules.orientation import OrientationRegressor

    model = None
    if args.ckpt:
        ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=False)
        dm = EBSDDataModule(**{k: v for k, v in ckpt["datamodule_hyper_parameters"].items() if not k.startswith("_")})
        model = OrientationRegressor.load_from_checkpoint(args.ckpt, map_location="cpu").eval()
    else:
        dm = EBSDDataModule(semi_edge_steps=args.semi_edge_steps, n_test=args.n_test)
    dm.prepare_data()
    dm.setup()
    mp = master_pattern()
    dictionary, test = dm.arrays["dictionary"], dm.arrays["test"]
    results: dict[str, float] = {"dictionary_patterns": len(dictionary["patterns"]),
                                 "test_patterns": len(test["patterns"])}

    xmap, seconds = dictionary_index(test["patterns"], dictionary["patterns"], dictionary["quaternions"].numpy(),
                                     mp.phase)
    results["cpu_di_patterns_per_s"] = len(test["patterns"]) / seconds
    di = disorientation_degrees(torch.from_numpy(xmap.rotations.data.reshape(-1, 4)), test["quaternions"])
    results.update({"di_mde": float(di.mean()), "di_mde_median": float(np.median(di))})
    if model is not None:
        net = disorientation_degrees(net_quaternions(model, test["patterns"], args.batch)[0], test["quaternions"])
        results.update({"omnet_mde": float(net.mean()), "omnet_mde_median": float(np.median(net))})
    net = model.net if model is not None else OMNet(dm.n_features)
    results["omnet_parameters"] = sum(p.numel() for p in net.parameters())
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:  # the inference form runs, as a run's own prediction; the module as trained beside it
        results[f"{device}_omnet_patterns_per_s"] = net_patterns_per_s(net.for_inference(), test["patterns"], device,
                                                                       args.batch)
        results[f"{device}_omnet_patterns_per_s_as_trained"] = net_patterns_per_s(net, test["patterns"], device,
                                                                                  args.batch)
    for device in devices:  # on a copy: the trained weights stay as loaded
        for name, dtype in (("", torch.float32), ("_bf16", torch.bfloat16)):
            results[f"{device}_omnet_train_samples_per_s{name}"] = net_train_samples_per_s(
                copy.deepcopy(net), test["patterns"], device, dtype=dtype)
    from cli.bench.models import matmul_gflops

    threads = torch.get_num_threads()
    results.update({f"cpu_matmul_gflops_{name}": matmul_gflops(threads, dtype=dtype)
                    for name, dtype in (("float32", torch.float32), ("bf16", torch.bfloat16))})
    results["cpu_omnet_speedup_over_di"] = results["cpu_omnet_patterns_per_s"] / results["cpu_di_patterns_per_s"]
    if args.paper_net:
        paper = OMNet(dm.n_features, channels=(64, 64, 128, 128, 256, 256, 256, 256), shared_width=3328,
                      branch_widths=(512, 512, 256))
        results["paper_omnet_parameters"] = sum(p.numel() for p in paper.parameters())
        for device in devices:
            results[f"{device}_paper_omnet_patterns_per_s"] = net_patterns_per_s(paper.for_inference(),
                                                                                 test["patterns"][:1024],
                                                                                 device, 64)
        del paper
    sizes, per_pattern = [len(dictionary["patterns"])], [1 / results["cpu_di_patterns_per_s"]]
    for steps in args.dictionary_steps:  # DI against other dictionaries, simulated once into the cache
        other = EBSDDataModule(semi_edge_steps=[steps], n_test=dm.hparams.n_test, n_val=dm.hparams.n_val,
                               seed=dm.hparams.seed)
        other.prepare_data()
        other.setup()
        patterns = other.arrays["dictionary"]
        _, seconds = dictionary_index(test["patterns"], patterns["patterns"], patterns["quaternions"].numpy(), mp.phase)
        results[f"dictionary_N{steps}_patterns"] = len(patterns["patterns"])
        results[f"cpu_di_N{steps}_patterns_per_s"] = len(test["patterns"]) / seconds
        results[f"cpu_omnet_speedup_over_di_N{steps}"] = results["cpu_omnet_patterns_per_s"] * seconds / len(
            test["patterns"])
        sizes.append(len(patterns["patterns"]))
        per_pattern.append(seconds / len(test["patterns"]))
    if len(sizes) > 1:
        # seconds per test pattern = a + b * dictionary size, fitted through the measured sizes
        slope, intercept = np.polyfit(np.array(sizes, dtype=float), np.array(per_pattern), 1)
        if slope > 0:  # else the sizes are too small or too close to tell the per-pattern cost apart
            per_paper = intercept + slope * PAPER_DICTIONARY
            results["cpu_di_paper_dictionary_patterns_per_s_extrapolated"] = 1 / per_paper
            for prefix in ("cpu_omnet", "cpu_paper_omnet"):
                if f"{prefix}_patterns_per_s" in results:
                    results[f"{prefix}_speedup_over_di_paper_dictionary_extrapolated"] = \
                        results[f"{prefix}_patterns_per_s"] * per_paper
    for device in devices:
        results.update({f"{device}_{k}": v for k, v in loss_pairs_per_s(device, args.pairs).items()})
    results.update(deviation_from_orix())
    for key, value in results.items():
        print(f"{key:60s} {value:14.4g}")
    import mlflow

    mlflow.set_experiment(experiment_id=experiment_id(mlflow.MlflowClient(), "bench"))
    with mlflow.start_run(run_name=f"bench-ebsd-{os.uname().nodename}"):
        mlflow.log_params({**{k: str(v) for k, v in vars(args).items()}, "cpu_count": os.cpu_count(),
                           "torch_threads": torch.get_num_threads(), "torch": torch.__version__})
        mlflow.log_metrics(results)
    return results


if __name__ == "__main__":
    main()
