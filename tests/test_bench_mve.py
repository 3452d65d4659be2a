"""make bench-mve runs on a small grid and reports its rates (the numbers are read by people)."""

from cli.bench_mve import main as bench_mve


def test_bench_mve_reports_elements_per_second_and_iterations(workdir):
    results = bench_mve(["--size", "15", "--n", "2", "--batch", "2"])
    assert results["cpu_elements_per_s"] > 0
    assert 1 <= results["cpu_cg_iterations_mean"] <= results["cpu_cg_iterations_max"] < 1000
    assert 0 < results["cpu_fft_share"] < 1.5
