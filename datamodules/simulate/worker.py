"""Run a CPU-bound simulation in a worker process whose OpenMP threads sleep when idle.

The elasticity solver alternates torch's element-wise operations (OpenMP threads) with scipy's FFTs (scipy's
own threads). By default torch's idle OpenMP threads spin for a while after each operation and take the cores
from the FFT workers; ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep. The setting is read once, when the OpenMP
runtime starts, so it cannot be changed inside a process that already runs torch, and it would cost the
training process itself (a small-operation net like Roost pays a wake-up per operation). The worker is a fresh
(spawned) interpreter started with the variable set; the caller's process keeps its own setting.

The worker exits when its caller is gone (killed, or stopped by Ctrl-C) or when the caller's wait for it ends in
an exception (a SIGTERM turned into KeyboardInterrupt), after any write in progress under :data:`commit_lock`:
an orphan would go on solving into the file that the caller's next run resumes, and a caller would wait for its
worker at exit.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")


#: held by the worker's function while it writes what must not be cut in half (a committed batch)
commit_lock = threading.Lock()


def _exit_with_caller(caller: int, stop) -> None:
    """In the worker: a thread that ends the process soon after ``caller`` is gone or ``stop`` is set, never
    inside a commit."""
    def watch():
        while os.getppid() == caller and not stop.wait(0.5):
            pass
        with commit_lock:
            os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def in_passive_worker(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` in a spawned process with ``OMP_WAIT_POLICY=PASSIVE``; its result or its exception.
    ``fn`` and its arguments must be picklable (a module-level function)."""
    saved = os.environ.get("OMP_WAIT_POLICY")
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    try:  # the child is started inside submit and copies the environment then
        pool = ProcessPoolExecutor(1, mp_context=context, initializer=_exit_with_caller, initargs=(os.getpid(), stop))
        future = pool.submit(fn, *args, **kwargs)
    finally:
        if saved is None:
            del os.environ["OMP_WAIT_POLICY"]
        else:
            os.environ["OMP_WAIT_POLICY"] = saved
    try:
        result = future.result()
    except BaseException:  # its exception, or Ctrl-C or SIGTERM here: a busy worker stops after its commit
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return result
