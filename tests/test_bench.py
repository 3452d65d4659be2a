"""make bench runs and reports rates; the numbers themselves are read by people, not asserted."""

import os

import pytest

from cli.bench.models import main as bench

# runs the real commands end to end: `make test` (CI), not `make test-fast`
pytestmark = pytest.mark.slow


def test_bench_reports_throughput_beside_the_matmul_limit(workdir):
    results = bench(["--skip_epoch", "--batches", "1", "--nets", "roost", "--steps", "3"])
    assert results["matmul_gflops_1thread"] > 0
    assert 0 < results["elemnet_share_of_matmul_1thread"] < 1.5
    assert results["roost_train_per_s_bf16-mixed"] > 0 and results["roost_train_per_s_32-true_random_batches"] > 0
    assert results[f"matmul_gflops_{os.cpu_count()}threads_bf16-mixed"] > 0
