"""``make bench-screen``: how fast the screen runs here, part by part, against the device's GEMM rate.

Measures, on the same real quaternary chunks of the paper's space (all 86
elements, w+x+y+z <= 10): building the compositions on the device
(enumeration), the model's forward passes (scoring; its rate in GFLOP/s
beside the float32 matrix-multiply rate of the device), the hull against the
OQMD training split (binary bound plus exact hulls where needed), and the
three together as ``make screen`` runs them. It states the peak memory and what
the paper-sized screen (446,597,140 compositions) would take at that rate.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

from materials.enumeration import chunk_combinations, chunks, count_compositions, element_ids

PAPER_TOTAL = sum(count_compositions(86, 4, 10).values())


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def gemm_gflops(device: torch.device, n: int = 4096) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = min(timed(lambda: a @ b)[1] for _ in range(5))
    return 2 * n ** 3 / best / 1e9


def flops_per_composition(net: torch.nn.Module) -> int:
    return sum(2 * m.in_features * m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ckpt", default=None, help="a trained checkpoint (default: an untrained ElemNet; speed is the same)")
    ap.add_argument("--chunks", type=int, default=3, help="quaternary chunks to time (~730k compositions each)")
    ap.add_argument("--threshold", type=float, default=0.2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch_size", type=int, default=0, help="scoring batch (default: the screen's)")
    args = ap.parse_args(argv)

    from materials.screening import Scorer, chunk_fractions, hull_energies, screen_chunk
    from materials.enumeration import ratio_patterns
    from datamodules.composition import CompositionDataModule
    from lightning_modules.nets import ElemNet
    from lightning_modules.regression import PropertyRegressor
    from materials.hull import BinaryHullTable, HullIndex

    if args.ckpt:
        from lightning_modules.composition_model import load_composition_model

        module, datamodule = load_composition_model(args.ckpt)
    else:
        torch.manual_seed(0)
        module, datamodule = PropertyRegressor(ElemNet()), CompositionDataModule()
    scorer = Scorer(module, datamodule, args.device, batch_size=args.batch_size)
    datamodule.setup()
    ids = element_ids("")
    index, t_index = timed(lambda: HullIndex(*datamodule.compositions["train"]))
    binaries, t_table = timed(lambda: BinaryHullTable(index, ids))
    t_hull_setup = t_index + t_table
    quaternary = [c for c in chunks(len(ids), 4, 4)][: args.chunks]
    n = sum(len(chunk_combinations(c, len(ids))) for c in quaternary) * 205
    scorer.calibrate(chunk_fractions(ids, chunk_combinations(quaternary[0], len(ids))[:2048], 4, 10, scorer.device))

    fractions, t_enum = timed(lambda: [chunk_fractions(ids, chunk_combinations(c, len(ids)), 4, 10, scorer.device)
                                       for c in quaternary])
    gemm_before = gemm_gflops(scorer.device)  # this machine's speed drifts: bracket the scoring
    preds, t_score = timed(lambda: [scorer.predict(f).double().cpu().numpy().reshape(-1, 205) for f in fractions])
    gemm = max(gemm_before, gemm_gflops(scorer.device))  # the higher one: the conservative share
    del fractions
    patterns = ratio_patterns(4, 10)
    _, t_hull = timed(lambda: [hull_energies(ids, chunk_combinations(c, len(ids)), patterns, p, args.threshold,
                                             index, binaries) for c, p in zip(quaternary, preds)])
    index._cache.clear()  # the combined run computes its hulls afresh
    results, t_all = timed(lambda: [screen_chunk(c, ids, 10, args.threshold, scorer, index, binaries) for c in quaternary])
    flops = flops_per_composition(module)
    achieved = n * flops / t_score / 1e9
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_peak = torch.cuda.max_memory_allocated() / 2 ** 20 if scorer.device.type == "cuda" else None
    rows = [("enumeration", n / t_enum), ("scoring", n / t_score), ("hull (bound + exact)", n / t_hull),
            ("together (make screen)", n / t_all)]
    device_name = torch.cuda.get_device_name() if scorer.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    text = [f"# Screening benchmark on {device_name}, precision {scorer.precision_used}, "
            f"batch {scorer.batch_size:,}", "",
            f"{len(quaternary)} quaternary chunks of the paper's space, {n:,} compositions; "
            f"{sum(r.n_exact_hulls for r in results):,} of {n // 205:,} systems needed an exact hull; "
            f"{sum(len(r.candidates) for r in results):,} candidates at {args.threshold} eV/atom "
            f"({'trained ' + args.ckpt if args.ckpt else 'untrained ElemNet: counts mean nothing'}).", "",
            "| stage | compositions/s |", "|---|---|"]
    text += [f"| {name} | {rate:,.0f} |" for name, rate in rows]
    text += ["", f"Scoring: {flops / 1e6:.2f} MFLOP per composition, {achieved:,.1f} GFLOP/s = "
             f"{100 * achieved / gemm:.0f}% of this device's float32 GEMM rate ({gemm:,.1f} GFLOP/s, 4096² matmul, the higher of "
             f"{gemm_before:,.1f} just before and the one just after scoring).",
             f"Hull index + binary table built in {t_hull_setup:.1f} s. Peak memory: {peak_mib:,.0f} MiB resident"
             + (f", {gpu_peak:,.0f} MiB GPU" if gpu_peak else "") + ".",
             f"The paper-sized screen ({PAPER_TOTAL:,} compositions) at the combined rate: "
             f"{PAPER_TOTAL / (n / t_all) / 60:,.1f} min; scoring alone {PAPER_TOTAL / (n / t_score) / 60:,.1f} min."]
    print("\n".join(text))
    return {"rates": dict(rows), "gemm_gflops": gemm, "scoring_gflops": achieved, "peak_mib": peak_mib}


if __name__ == "__main__":
    main(sys.argv[1:])
