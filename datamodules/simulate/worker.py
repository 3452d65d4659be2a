"""Run a CPU-bound simulation in a worker process whose OpenMP threads sleep when idle.

The elasticity solver alternates torch's element-wise operations (OpenMP threads) with scipy's FFTs (scipy's
own threads). By default torch's idle OpenMP threads spin for a while after each operation and take the cores
from the FFT workers; ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep. The setting is read once, when the OpenMP
runtime starts, so it cannot be changed inside a process that already runs torch, and it would cost the
training process itself (a small-operation net like Roost pays a wake-up per operation). The worker is a fresh
(spawned) interpreter started with the variable set; the caller's process keeps its own setting.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def in_passive_worker(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` in a spawned process with ``OMP_WAIT_POLICY=PASSIVE``; its result or its exception.
    ``fn`` and its arguments must be picklable (a module-level function)."""
    saved = os.environ.get("OMP_WAIT_POLICY")
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:  # the child is started inside submit and copies the environment then
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        future = pool.submit(fn, *args, **kwargs)
    finally:
        if saved is None:
            del os.environ["OMP_WAIT_POLICY"]
        else:
            os.environ["OMP_WAIT_POLICY"] = saved
    try:
        return future.result()
    finally:
        pool.shutdown(cancel_futures=True)
