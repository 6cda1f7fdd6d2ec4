"""`rethink serve`: the local stack for a team on one box, an MLflow tracking server and optuna-dashboard
on the study storage. Both bind to 127.0.0.1 unless --host is given explicitly."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from study.plan.spec import SpecError
from study.records.secrets import redact
from study.records.storage import make_storage, storage_url


def add_serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on: loopback only unless you give another")
    p.add_argument("--mlflow-port", type=int, default=5000, help="port of the MLflow tracking server")
    p.add_argument("--dashboard-port", type=int, default=8080, help="port of optuna-dashboard")
    p.add_argument(
        "--backend-store-uri",
        default=os.environ.get("MLFLOW_BACKEND_STORE_URI", "sqlite:///mlflow.db"),
        help="MLflow backend: SQLite or PostgreSQL (default: env MLFLOW_BACKEND_STORE_URI, else sqlite:///mlflow.db)",
    )
    p.add_argument("--artifacts-destination", default="./mlartifacts", help="MLflow artifact root")
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna storage shown by optuna-dashboard (default: env RETHINK_STORAGE, else sqlite:///optuna.db)",
    )
    p.add_argument(
        "--basic-auth",
        action="store_true",
        help="MLflow basic auth (admin credentials from MLFLOW_AUTH_CONFIG_PATH; see docs/deploy.md)",
    )


def commands(args: argparse.Namespace) -> dict[str, list[str]]:
    """The two servers' command lines; the store URLs reach them through the environment (`env`), so a
    password in one never shows in `ps`."""
    mlflow_cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        args.host,
        "--port",
        str(args.mlflow_port),
        "--artifacts-destination",
        args.artifacts_destination,
        "--workers",
        "1",
    ]
    if args.basic_auth:
        mlflow_cmd += ["--app-name", "basic-auth"]
    dashboard = (
        "import os, optuna_dashboard; "
        f"optuna_dashboard.run_server(os.environ['RETHINK_STORAGE'], host={args.host!r}, port={args.dashboard_port})"
    )
    return {"mlflow": mlflow_cmd, "optuna-dashboard": [sys.executable, "-c", dashboard]}


def env(args: argparse.Namespace) -> dict[str, str]:
    storage = args.storage.removeprefix("journal:") if args.storage.startswith("journal:") else args.storage
    return dict(os.environ, MLFLOW_BACKEND_STORE_URI=args.backend_store_uri, RETHINK_STORAGE=storage)


def check_port_free(host: str, port: int, option: str) -> None:
    """Refuse a port another process listens on, before starting anything."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise SpecError(
                f"{option} {port}: {host}:{port} is not free ({e.strerror}); stop what uses it, "
                f"or pass another {option}"
            ) from None


STARTUP_S = 60  # how long each server has to start answering


def run_serve(args: argparse.Namespace) -> int:
    args.storage = storage_url(args.storage)
    check_port_free(args.host, args.mlflow_port, "--mlflow-port")
    check_port_free(args.host, args.dashboard_port, "--dashboard-port")
    make_storage(args.storage)  # creates the tables (or journal file) optuna-dashboard expects to find
    procs = {name: subprocess.Popen(cmd, start_new_session=True, env=env(args)) for name, cmd in commands(args).items()}
    try:
        code = _wait_until_up(args, procs)
        if code == 0:
            mlflow_url = f"http://{args.host}:{args.mlflow_port}"
            print(f"MLflow tracking server: {mlflow_url} (backend {redact(args.backend_store_uri)})")
            print(f"optuna-dashboard:       http://{args.host}:{args.dashboard_port} (storage {redact(args.storage)})")
            print(f"workers: rethink study SPEC --tracking-uri {mlflow_url} (the storage URL in env RETHINK_STORAGE)")
            print("Ctrl-C stops both.", flush=True)
            code = _watch(procs)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (study/lifecycle.py), even while the servers start: a clean stop
        code = 0
    finally:
        _stop(procs)
    return code


def _answers(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def _wait_until_up(args: argparse.Namespace, procs: dict[str, subprocess.Popen]) -> int:
    ports = {"mlflow": args.mlflow_port, "optuna-dashboard": args.dashboard_port}
    deadline = time.monotonic() + STARTUP_S
    waiting = dict(ports)
    while waiting and time.monotonic() < deadline:
        for name, p in procs.items():
            if p.poll() is not None:
                print(f"rethink serve: error: {name} exited with code {p.returncode} while starting", file=sys.stderr)
                return 1
        waiting = {n: port for n, port in waiting.items() if not _answers(args.host, port)}
        time.sleep(0.3)
    if waiting:
        print(f"rethink serve: error: {', '.join(waiting)} did not answer within {STARTUP_S} s", file=sys.stderr)
        return 1
    return 0


def _watch(procs: dict[str, subprocess.Popen]) -> int:
    """Until a server exits on its own (1, with a message); Ctrl-C and SIGTERM end it in run_serve."""
    while True:
        for name, p in procs.items():
            if p.poll() is not None:
                print(f"rethink serve: error: {name} exited with code {p.returncode}", file=sys.stderr)
                return 1
        time.sleep(0.5)


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    for p in procs.values():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
