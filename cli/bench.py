"""``make bench``: ElemNet throughput on this machine, beside the machine's own limit.

Prints and logs (MLflow experiment ``bench``):
- float32 matrix-multiply rate (GFLOP/s) on one thread and on all threads: the
  ceiling any MLP can reach here;
- ElemNet inference (compositions/s) on one thread and on all threads, and the
  share of the matmul rate it reaches (2 FLOPs per weight per composition);
- the paper's figure for scale: 25,662 compositions in 9.28 s on one CPU core
  (diss. Table 3.2), against the time we take for the same count;
- one training epoch on the real OQMD training split through the same
  datamodule and LightningModule as ``make train``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db")

import torch  # noqa: E402

from lightning_modules.nets import ElemNet  # noqa: E402


def _best_of(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(threads: int, n: int = 2048) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / _best_of(lambda: a @ b) / 1e9


@torch.inference_mode()
def inference_rate(net: torch.nn.Module, threads: int, batch: int = 4096, batches: int = 8) -> float:
    torch.set_num_threads(threads)
    x = torch.rand(batch, 86)
    x /= x.sum(1, keepdim=True)
    seconds = _best_of(lambda: [net(x) for _ in range(batches)], repeats=3)
    return batch * batches / seconds


def epoch_seconds(batch_size: int, threads: int) -> tuple[float, int]:
    import lightning.pytorch as pl

    from datamodules.composition import CompositionDataModule
    from lightning_modules.regression import PropertyRegressor

    torch.set_num_threads(threads)
    dm = CompositionDataModule(batch_size=batch_size)
    dm.prepare_data()
    dm.setup("fit")
    module = PropertyRegressor(ElemNet(), lr=1e-4)
    trainer = pl.Trainer(max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=True, enable_model_summary=False, num_sanity_val_steps=0,
                         use_distributed_sampler=False, accelerator="cpu")
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=dm.train_dataloader())
    return time.perf_counter() - start, len(dm.splits["train"])


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epoch_batch_size", type=int, default=512, help="batch size of the timed epoch (512 = CPU default)")
    ap.add_argument("--skip_epoch", action="store_true", help="skip the training-epoch timing")
    ap.add_argument("--batches", type=int, default=8, help="inference batches of 4096 per timing")
    args = ap.parse_args(argv)
    all_threads = os.cpu_count() or 1
    net = ElemNet().eval()
    flops_per_composition = 2 * sum(p.numel() for p in net.parameters() if p.dim() == 2)
    results: dict[str, float] = {}
    for label, threads in (("1thread", 1), (f"{all_threads}threads", all_threads)):
        gflops = matmul_gflops(threads)
        rate = inference_rate(net, threads, batches=args.batches)
        results[f"matmul_gflops_{label}"] = gflops
        results[f"elemnet_infer_per_s_{label}"] = rate
        results[f"elemnet_share_of_matmul_{label}"] = rate * flops_per_composition / 1e9 / gflops
    results["paper_25662_on_1_core_s"] = 9.28
    results["ours_25662_on_1_thread_s"] = 25662 / results["elemnet_infer_per_s_1thread"]
    if not args.skip_epoch:
        seconds, n = epoch_seconds(args.epoch_batch_size, all_threads)
        results[f"train_epoch_s_batch{args.epoch_batch_size}"] = seconds
        results[f"train_samples_per_s_batch{args.epoch_batch_size}"] = n / seconds
    for key, value in results.items():
        print(f"{key:40s} {value:12.4g}")
    import mlflow

    mlflow.set_experiment("bench")
    with mlflow.start_run(run_name=f"bench-{os.uname().nodename}"):
        mlflow.log_params({"cpu_count": all_threads, "torch": torch.__version__, "processor": os.uname().machine})
        mlflow.log_metrics(results)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
