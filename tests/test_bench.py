"""make bench runs and reports rates; the numbers themselves are read by people, not asserted."""

from cli.bench import main as bench


def test_bench_reports_throughput_beside_the_matmul_limit(workdir):
    results = bench(["--skip_epoch", "--batches", "1"])
    assert results["matmul_gflops_1thread"] > 0
    assert 0 < results["elemnet_share_of_matmul_1thread"] < 1.5
