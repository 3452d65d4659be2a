"""``make bench-xrd``: frames/s of 2D background removal and PADNet inference at 2048² (CPU, and a GPU when present).

- background removal (7.3.4, f = 200): MF (minimum filter) then CS (mean filter of MF), with
  scipy.ndimage on one thread and with the batched PyTorch version (CPU, and CUDA when available);
  the paper: about 7 min per 2048² frame on one 2.3 GHz core for CS, 7× faster on a Titan X;
- PADNet inference (the paper profile's net: f = 50 slope filters, frozen) for the SLAC model
  (one frame per sample) and the NIST model (two frames, two graphs), in samples/s;
- the simulator: frames/s of :func:`datamodules.simulate.xrd.render_sample` at this size.

Logs every number to the MLflow experiment ``bench``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from callbacks.mlflow_run import experiment_id


def _timed(fn, repeat: int, device: str = "cpu") -> float:
    """Seconds per call of ``fn`` after one warm-up call."""
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat


def bench_background(frames: np.ndarray, f: int, devices: list[str]) -> dict[str, float]:
    from scipy import ndimage

    from materials.xrd_background import mean_filter_torch, minimum_filter_torch

    out = {}
    one = frames[0]
    out["background_scipy_frames_per_s"] = 1 / _timed(
        lambda: ndimage.uniform_filter(ndimage.minimum_filter(one, size=f, mode="nearest"), size=f, mode="nearest"),
        len(frames))
    for device in devices:
        x = torch.from_numpy(frames).to(device)
        out[f"background_torch_{device}_frames_per_s"] = len(frames) / _timed(
            lambda: mean_filter_torch(minimum_filter_torch(x, f), f), 2, device)
    return out


def bench_padnet(size: int, filter_size: int, pool_stride: int, channels: tuple[int, ...], batch: int,
                 devices: list[str]) -> dict[str, float]:
    from lightning_modules.nets import PADNet

    out = {}
    for device in devices:
        for name, n_frames in (("slac", 1), ("nist", 2)):
            net = PADNet(n_features=size, n_frames=n_frames, filter_size=filter_size, pool_stride=pool_stride,
                         channels=channels, spatial_softmax=True).to(device).eval()
            frames = torch.rand(batch, n_frames, size, size, device=device) * 1000
            composition = torch.full((batch, 3), 1 / 3, device=device)
            with torch.inference_mode():
                seconds = _timed(lambda: net(frames, composition), 2, device)
            out[f"padnet_{name}_{device}_samples_per_s"] = batch / seconds
    return out


def bench_simulator(size: int, n: int) -> dict[str, float]:
    from datamodules.simulate.xrd import XRDDatasetSpec, library, render_sample

    out = {}
    for preset in ("SLAC", "NIST"):
        spec = XRDDatasetSpec(preset=preset, frame_size=size)
        lib = library(spec)
        rows = range(n)
        seconds = _timed(lambda: [render_sample(spec, i, lib["composition"][i], lib["phase_fraction"][i])
                                  for i in rows], 1) / n
        out[f"simulate_{preset.lower()}_samples_per_s"] = 1 / seconds
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048, help="frame side (the paper's 2048)")
    ap.add_argument("--n", type=int, default=4, help="frames per timing")
    ap.add_argument("--background-filter", type=int, default=200)
    ap.add_argument("--filter-size", type=int, default=50, help="PADNet slope filter f")
    ap.add_argument("--pool-stride", type=int, default=4)
    ap.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 64, 128])
    ap.add_argument("--batch", type=int, default=2, help="PADNet samples per forward pass")
    ap.add_argument("--simulate", type=int, default=2, help="samples simulated per preset (0: skip)")
    args = ap.parse_args(argv)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rng = np.random.default_rng(0)
    frames = rng.poisson(1000.0, (args.n, args.size, args.size)).astype(np.float32)
    results = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    results.update({k.replace("_cpu_", "_cpu1_"): v for k, v in bench_background(frames, args.background_filter,
                                                                                  ["cpu"]).items()})
    torch.set_num_threads(threads)
    results.update(bench_background(frames, args.background_filter, devices))
    results.update(bench_padnet(args.size, args.filter_size, args.pool_stride, tuple(args.channels), args.batch, devices))
    if args.simulate:
        results.update(bench_simulator(args.size, args.simulate))
    for key, value in results.items():
        print(f"{key:44s} {value:12.4g}")
    scipy_s = 1 / results["background_scipy_frames_per_s"]
    print(f"MF + CS at f = {args.background_filter} on a {args.size}^2 frame: {scipy_s:.3f} s with scipy on one "
          f"thread (the paper: ~7 min for CS on one core)")
    import mlflow

    mlflow.set_experiment(experiment_id=experiment_id(mlflow.MlflowClient(), "bench"))
    with mlflow.start_run(run_name=f"bench-xrd-{os.uname().nodename}"):
        mlflow.log_params({**vars(args), "cpu_count": os.cpu_count(), "torch_threads": threads,
                           "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if "cuda" in devices else "none"})
        mlflow.log_metrics(results)
    return results


if __name__ == "__main__":
    main()
