"""``make bench-mve``: the FFT elasticity solver's speed on this machine (CPU, and a GPU when present).

For 51³ elements at contrast 50 (Yang et al. 2018's dataset) it reports elements/s,
CG iterations to the stated tolerance, and the floor those iterations set: the time
of their FFTs alone (the 12 FFTs of one iteration timed on their own, times the
iterations) and its share of the solve; all logged to the MLflow experiment ``bench``. On a CPU
``cpu_*`` is measured as the datasets are labelled, in a worker process with passive OpenMP threads
(:mod:`datamodules.simulate.worker`), ``cpu_in_process_*`` in this process as it is. ``--size 21 --contrast 10`` gives the localization datasets.

``--refine R`` also measures how far the labels are from the converged field: the same elements with
every voxel split into R³ are solved again, and the fine ε11 averaged back over each voxel is the
reference for the local ε11 (MAE in % of the applied strain, the unit of the localization MASE) and for
C11.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from callbacks.mlflow_run import experiment_id
from datamodules.simulate.worker import in_passive_worker
from materials.elasticity import TwoPhaseElasticity, effective_c11, irfftn3, rfftn3
from materials.microstructure import MicrostructureSampler


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench_device(device: str, size: int, contrast: float, n: int, batch: int, tol: float,
                 dtype: torch.dtype) -> dict[str, float]:
    sampler, material = MicrostructureSampler(size=size), TwoPhaseElasticity(contrast=contrast)
    micro = sampler.draw(range(n))["micro"].to(device)
    effective_c11(micro[:1], material, tol=tol, dtype=dtype)  # warm-up (FFT plans, kernels)
    _sync(device)
    start, iterations = time.perf_counter(), []
    for first in range(0, n, batch):
        _, solution = effective_c11(micro[first:first + batch], material, tol=tol, dtype=dtype)
        iterations.append(solution.iterations.float())
    _sync(device)
    seconds = time.perf_counter() - start
    iters = torch.cat(iterations).cpu()
    field = torch.randn(batch, 6, size, size, size, dtype=dtype, device=device)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(3):
        irfftn3(rfftn3(field), (size,) * 3)
    _sync(device)
    fft_per_iteration = (time.perf_counter() - t0) / 3 / batch
    per_element = seconds / n
    return {"elements_per_s": n / seconds, "seconds_per_element": per_element,
            "cg_iterations_mean": float(iters.mean()), "cg_iterations_max": float(iters.max()),
            "fft_share": fft_per_iteration * float(iters.mean()) / per_element,
            "fft_floor_seconds_per_element": fft_per_iteration * float(iters.mean())}


def discretization_error(size: int, contrast: float, n: int, refine: int, tol: float) -> dict[str, float]:
    """Local ε11 and C11 of ``n`` elements against the same geometry on an R-times finer grid (R = ``refine``)."""
    material = TwoPhaseElasticity(contrast=contrast)
    micro = MicrostructureSampler(size=size).draw(range(n))["micro"]
    c11, coarse = effective_c11(micro, material, tol=tol)  # under a unit ε11: strains are in applied strains
    fine_micro = micro.repeat_interleave(refine, 1).repeat_interleave(refine, 2).repeat_interleave(refine, 3)
    fine_c11, fine = effective_c11(fine_micro, material, tol=tol)
    averaged = fine.strain[:, 0].reshape(n, size, refine, size, refine, size, refine).mean(dim=(2, 4, 6))
    return {"label_strain_mae_pct": 100 * float((coarse.strain[:, 0] - averaged).abs().mean()),
            "label_c11_error_pct": 100 * float(((c11 - fine_c11) / fine_c11).abs().mean())}


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=51)
    ap.add_argument("--contrast", type=float, default=50.0)
    ap.add_argument("--n", type=int, default=8, help="elements timed per device (GPU: 32 x this)")
    ap.add_argument("--batch", type=int, default=4, help="elements per solver call on CPU (GPU: 64)")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--refine", type=int, default=0,
                    help="also compare the labels of --n elements with the same elements on an R-times finer grid")
    args = ap.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    devices = [("cpu", args.n, args.batch)] + ([("cuda", 32 * args.n, 64)] if torch.cuda.is_available() else [])
    results: dict[str, float] = {}
    for device, n, batch in devices:
        bench = (device, args.size, args.contrast, n, batch, args.tol, dtype)
        # on a CPU as the datasets are labelled (a worker with passive OpenMP threads), and in this process
        runs = {"cpu": in_passive_worker(bench_device, *bench), "cpu_in_process": bench_device(*bench)} \
            if device == "cpu" else {device: bench_device(*bench)}
        for prefix, measured in runs.items():
            results.update({f"{prefix}_{key}": value for key, value in measured.items()})
    if args.refine > 1:
        results.update(discretization_error(args.size, args.contrast, args.n, args.refine, args.tol))
    for key, value in results.items():
        print(f"{key:32s} {value:12.4g}")
    hours_8550 = 8550 / results["cpu_elements_per_s"] / 3600
    print(f"the paper's 8,550 elements of {args.size}^3 at contrast {args.contrast:g}: {hours_8550:.1f} h on this CPU"
          + (f", {8550 / results['cuda_elements_per_s'] / 60:.1f} min on the GPU" if "cuda_elements_per_s" in results
             else ""))
    import mlflow

    mlflow.set_experiment(experiment_id=experiment_id(mlflow.MlflowClient(), "bench"))
    with mlflow.start_run(run_name=f"bench-mve-{os.uname().nodename}"):
        mlflow.log_params({**vars(args), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                           "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none"})
        mlflow.log_metrics(results)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
