"""The benchmarks: what this machine does per second, each beside the limit that bounds it.

``models`` (``make bench``: the composition nets' training in float32 and bf16 beside the GEMM rates),
``screen`` (``make bench-screen``), ``mve`` (``make bench-mve``: the FFT elasticity solver), ``crystal``
(``make bench-crystal``), ``ebsd`` (``make bench-ebsd``), ``xrd`` (``make bench-xrd``). Run one with
``python -m cli.bench.<name>``.
"""
