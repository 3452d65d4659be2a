"""``make bench``: the composition nets' throughput on this machine, beside the machine's own limit.

Prints and logs (MLflow experiment ``bench``):
- float32 matrix-multiply rate (GFLOP/s) on one thread and on all threads, and the bfloat16 rate on all
  threads: the ceilings any MLP can reach here;
- training samples/s of ElemNet, IRNet-17 and Roost (``--nets``) through their task configs on the real
  OQMD training split, in float32 and in bf16-mixed (``--precisions``), and for the MLPs the share of the
  GEMM rate of the same precision they reach (6 FLOPs per weight per sample: forward and backward);
  Roost also with random batches in float32 (its throughput before batches were bucketed by element count);
- one whole training epoch with validation, per net, in the precision a run gets by default
  (``cli/precision.py``): the wall time an epoch of ``make train`` takes;
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

import lightning.pytorch as pl
import torch

from callbacks.mlflow_run import experiment_id
from cli.precision import hardware_precision
from lightning_modules.nets import ElemNet


def _best_of(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(threads: int, n: int = 2048, dtype: torch.dtype = torch.float32) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n ** 3 / _best_of(lambda: a @ b) / 1e9


@torch.inference_mode()
def inference_rate(net: torch.nn.Module, threads: int, batch: int = 4096, batches: int = 8) -> float:
    torch.set_num_threads(threads)
    x = torch.rand(batch, 86)
    x /= x.sum(1, keepdim=True)
    seconds = _best_of(lambda: [net(x) for _ in range(batches)], repeats=3)
    return batch * batches / seconds


class StepClock(pl.Callback):
    """Times training batches after ``warmup`` optimizer steps (samples/s), and the fit from its first batch (s)."""

    def __init__(self, warmup: int = 0):
        self.warmup, self.samples = warmup, 0
        self.first = self.timed_from = self.timed_to = self.fit_end = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first is None:
            self.first = time.perf_counter()
        if trainer.global_step == self.warmup and self.timed_from is None:
            self.timed_from = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.timed_from is not None:
            self.samples += len(batch[-1])
            self.timed_to = time.perf_counter()

    def on_fit_end(self, trainer, pl_module):
        self.fit_end = time.perf_counter()

    def samples_per_s(self) -> float:
        return self.samples / (self.timed_to - self.timed_from)


GEMM_DTYPES = {"32-true": torch.float32, "bf16-mixed": torch.bfloat16}
NETS = ("elemnet", "irnet", "roost")  # each timed through its task's config: batch size, batching, features


def run_task(task: str, extra: list[str], warmup: int = 0):
    """Fit ``task`` through its config on the real data with ``extra`` options, no logger or checkpoints;
    returns (clock, the built CLI)."""
    from cli.configs import task_configs
    from cli.train import build

    cli = build([*task_configs(task),
                 "--trainer.logger=false", "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false",
                 "--trainer.enable_model_summary=false", "--trainer.num_sanity_val_steps=0", *extra])
    clock = StepClock(warmup)
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return clock, cli


def train_rate(task: str, precision: str, steps: int, extra: list[str] = ()) -> tuple[float, int]:
    """(training samples/s over ``steps`` batches after 10 of warm-up, weights of the net's matrices)."""
    clock, cli = run_task(task, [f"--trainer.precision={precision}", "--trainer.max_epochs=1",
                                 f"--trainer.limit_train_batches={10 + steps}", "--trainer.limit_val_batches=0",
                                 "--trainer.enable_progress_bar=false", *extra], warmup=10)
    weights = sum(p.numel() for p in cli.model.net.parameters() if p.dim() == 2)
    return clock.samples_per_s(), weights


def epoch_seconds(task: str) -> float:
    """Wall time of one whole training epoch and its validation, from the first batch, default precision."""
    clock, _ = run_task(task, ["--trainer.max_epochs=1"])
    return clock.fit_end - clock.first


def training_results(nets: list[str], precisions: list[str], steps: int, epoch: bool, gemm: dict[str, float]):
    results: dict[str, float] = {}
    for net in nets:
        for precision in precisions:
            rate, weights = train_rate(net, precision, steps)
            results[f"{net}_train_per_s_{precision}"] = rate
            if net != "roost":  # an MLP: 6 FLOPs per weight per sample
                results[f"{net}_train_share_of_gemm_{precision}"] = rate * 6 * weights / 1e9 / gemm[precision]
        if net == "roost":  # random batches, each padded to its largest composition, in float32
            results["roost_train_per_s_32-true_random_batches"], _ = train_rate(
                net, "32-true", steps, ["--data.init_args.batching=random"])
            best = max(results[f"roost_train_per_s_{p}"] for p in precisions)
            results["roost_speedup_vs_32-true_random_batches"] = best / results["roost_train_per_s_32-true_random_batches"]
        if epoch:
            results[f"{net}_epoch_with_validation_s"] = epoch_seconds(net)
    return results


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nets", nargs="*", default=list(NETS), choices=NETS,
                    help="nets whose training is timed (none: inference and GEMM rates only)")
    ap.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"], choices=list(GEMM_DTYPES))
    ap.add_argument("--steps", type=int, default=60, help="timed training batches per net and precision")
    ap.add_argument("--skip_epoch", action="store_true", help="skip the whole-epoch timings")
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
    gemm = {p: results[f"matmul_gflops_{all_threads}threads"] if p == "32-true" else
            matmul_gflops(all_threads, dtype=GEMM_DTYPES[p]) for p in args.precisions}
    results.update({f"matmul_gflops_{all_threads}threads_{p}": g for p, g in gemm.items()})
    torch.set_num_threads(all_threads)
    results.update(training_results(args.nets, args.precisions, args.steps, not args.skip_epoch, gemm))
    for key, value in results.items():
        print(f"{key:40s} {value:12.4g}")
    import mlflow

    mlflow.set_experiment(experiment_id=experiment_id(mlflow.MlflowClient(), "bench"))
    with mlflow.start_run(run_name=f"bench-{os.uname().nodename}"):
        mlflow.log_params({"cpu_count": all_threads, "torch": torch.__version__, "processor": os.uname().machine,
                           "default_precision": hardware_precision()})
        mlflow.log_metrics(results)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
