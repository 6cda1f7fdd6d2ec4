"""`rethink serve`: the local stack for a team on one box, an MLflow tracking server and optuna-dashboard
on the study storage. Both bind to 127.0.0.1 unless --host is given explicitly."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .storage import DEFAULT_STORAGE, make_storage, redact


def add_serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument("--mlflow-port", type=int, default=5000)
    p.add_argument("--dashboard-port", type=int, default=8080)
    p.add_argument("--backend-store-uri", default="sqlite:///mlflow.db", help="MLflow backend: SQLite or PostgreSQL")
    p.add_argument("--artifacts-destination", default="./mlartifacts", help="MLflow artifact root")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna storage shown by optuna-dashboard")
    p.add_argument(
        "--basic-auth",
        action="store_true",
        help="MLflow basic auth (admin credentials from MLFLOW_AUTH_CONFIG_PATH; see docs/deploy.md)",
    )


def commands(args: argparse.Namespace) -> dict[str, list[str]]:
    bin_dir = Path(sys.executable).parent
    mlflow_cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        args.host,
        "--port",
        str(args.mlflow_port),
        "--backend-store-uri",
        args.backend_store_uri,
        "--artifacts-destination",
        args.artifacts_destination,
        "--workers",
        "1",
    ]
    if args.basic_auth:
        mlflow_cmd += ["--app-name", "basic-auth"]
    storage = args.storage.removeprefix("journal:") if args.storage.startswith("journal:") else args.storage
    dashboard = shutil.which("optuna-dashboard", path=str(bin_dir)) or "optuna-dashboard"
    return {
        "mlflow": mlflow_cmd,
        "optuna-dashboard": [dashboard, storage, "--host", args.host, "--port", str(args.dashboard_port)],
    }


def run_serve(args: argparse.Namespace) -> int:
    make_storage(args.storage)  # creates the tables (or journal file) optuna-dashboard expects to find
    procs = {name: subprocess.Popen(cmd, start_new_session=True) for name, cmd in commands(args).items()}
    print(f"MLflow tracking server: http://{args.host}:{args.mlflow_port} (backend {redact(args.backend_store_uri)})")
    print(f"optuna-dashboard:       http://{args.host}:{args.dashboard_port} (storage {redact(args.storage)})")
    print(f"workers: rethink study SPEC --tracking-uri http://{args.host}:{args.mlflow_port} --storage ...")
    print("Ctrl-C stops both.", flush=True)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while not stop["now"] and all(p.poll() is None for p in procs.values()):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    code = 0
    for name, p in procs.items():
        if p.poll() is not None and p.returncode:
            print(f"{name} exited with {p.returncode}", file=sys.stderr)
            code = 1
        else:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs.values():
        p.wait(timeout=30)
    return code
