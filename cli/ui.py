"""``make ui``: the MLflow UI (a real tracking server) for this project's store, on loopback only."""

from __future__ import annotations

import argparse
import os
import sys


def server_command(store: str = "mlruns/mlflow.db", port: int = 5000) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{store}",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", default="mlruns/mlflow.db", help="the SQLite file of the MLflow store")
    ap.add_argument("--port", type=int, default=5000)
    args = ap.parse_args(argv)
    if not os.path.exists(args.store):
        sys.exit(f"no MLflow store at {args.store}: train something first (make train TASK=elemnet)")
    print(f"MLflow UI on http://127.0.0.1:{args.port}  (Ctrl-C stops it)", flush=True)
    os.execv(sys.executable, server_command(args.store, args.port))


if __name__ == "__main__":
    main()
