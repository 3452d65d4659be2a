"""make bench-mve runs on a small grid and reports its rates (the numbers are read by people)."""

from cli.bench.mve import main as bench_mve


def test_bench_mve_reports_elements_per_second_and_iterations(workdir):
    results = bench_mve(["--size", "15", "--n", "2", "--batch", "2"])
    assert results["cpu_elements_per_s"] > 0 and results["cpu_in_process_elements_per_s"] > 0  # worker, in process
    assert 1 <= results["cpu_cg_iterations_mean"] <= results["cpu_cg_iterations_max"] < 1000
    assert 0 < results["cpu_fft_share"] < 1.5


def test_bench_mve_measures_the_labels_against_a_finer_grid(workdir):
    """Refining by 1 would compare a field with itself; by 2 the labels differ by a visible, bounded amount."""
    from cli.bench.mve import discretization_error

    assert discretization_error(7, 10.0, 2, 1, 1e-8)["label_strain_mae_pct"] < 1e-4
    results = bench_mve(["--size", "9", "--contrast", "10", "--n", "2", "--batch", "2", "--refine", "2"])
    assert 0.1 < results["label_strain_mae_pct"] < 30
    assert 0 < results["label_c11_error_pct"] < 5
