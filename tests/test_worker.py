"""The passive-OpenMP worker that labels volume elements dies with the process that started it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def report_and_wait(pid_file: str) -> None:
    """The worker's job here: say who it is, then work for a minute."""
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(60)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # an exited orphan may wait as a zombie for a reaper that never comes


def _start(code: str, pid_file: Path) -> tuple[subprocess.Popen, int]:
    """The caller running ``code``, and its worker's pid once the worker has written it."""
    caller = subprocess.Popen([sys.executable, "-c", code], cwd=TESTS.parent)
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert caller.poll() is None and time.monotonic() < deadline, "the worker never started"
        time.sleep(0.1)
    return caller, int(pid_file.read_text())


def test_a_worker_exits_soon_after_its_caller_is_killed(tmp_path):
    pid_file = tmp_path / "worker.pid"
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); from test_worker import report_and_wait; "
            f"from datamodules.simulate.worker import in_passive_worker; in_passive_worker(report_and_wait, {str(pid_file)!r})")
    caller, worker = _start(code, pid_file)
    assert _running(worker)
    caller.kill()  # SIGKILL: no handler of the caller's runs
    caller.wait()
    deadline = time.monotonic() + 10
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(worker), "the worker outlived its caller"


def test_a_caller_interrupted_while_waiting_stops_its_worker_and_exits_at_once(tmp_path):
    """A caller whose wait ends in an exception (a SIGTERM turned into KeyboardInterrupt, as ``make train`` does
    while it labels) stops its worker and exits within seconds, not after the worker's minute of work."""
    pid_file = tmp_path / "worker.pid"
    code = "\n".join([
        "import signal, sys",
        f"sys.path.insert(0, {str(TESTS)!r})",
        "from test_worker import report_and_wait",
        "from datamodules.simulate.worker import in_passive_worker",
        "def interrupt(signum, frame): raise KeyboardInterrupt",
        "signal.signal(signal.SIGTERM, interrupt)",
        "try:",
        f"    in_passive_worker(report_and_wait, {str(pid_file)!r})",
        "except KeyboardInterrupt:",
        "    sys.exit(130)",
    ])
    caller, worker = _start(code, pid_file)
    caller.terminate()
    assert caller.wait(timeout=15) == 130  # without the stop the caller waits at exit for its worker's minute
    assert not _running(worker), "the worker outlived its caller"
