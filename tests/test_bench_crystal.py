from cli.bench.crystal import main


def test_bench_crystal_reports_every_rate(workdir):
    results = main(["--structures", "64", "--steps", "2", "--voronoi", "1"])
    assert results["structures"] == 64
    for key in ("graph_construction_per_s", "batching_per_s", "cpu_train_per_s", "cpu_inference_per_s",
                "voronoi_attributes_per_s"):
        assert results[key] > 0, key
    assert results["cpu_inference_per_s"] > results["cpu_train_per_s"]
