"""A run's resume snapshot (rethink.resume) kept in its MLflow run as the artifact `checkpoint/resume.pt`,
replaced after each snapshotted epoch; read back with torch.load(weights_only=True) and checked against the
recipe's digest before anything is built from it."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import mlflow
import torch

from rethink.resume import EVERY_SECONDS, valid_state

SNAPSHOT = "checkpoint/resume.pt"


def snapshot_seconds() -> float:
    """Training seconds between snapshots (env RETHINK_SNAPSHOT_SECONDS; 0: after every epoch)."""
    return float(os.environ.get("RETHINK_SNAPSHOT_SECONDS", EVERY_SECONDS))


def write_snapshot(client: mlflow.MlflowClient, run_id: str, state: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(SNAPSHOT).name
        torch.save(state, path)
        client.log_artifact(run_id, str(path), str(Path(SNAPSHOT).parent))


def read_snapshot(client: mlflow.MlflowClient, run_id: str | None, digest: str) -> dict | None:
    """The run's snapshot when it has one for this recipe; None otherwise (never a reason to fail: the run
    then trains from its first epoch)."""
    if not run_id:
        return None
    try:
        names = [f.path for f in client.list_artifacts(run_id, str(Path(SNAPSHOT).parent))]
    except Exception:  # noqa: BLE001 - a run without artifacts, or a store that cannot list them
        return None
    if SNAPSHOT not in names:
        return None
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one small file: no progress bar
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, SNAPSHOT, tmp)
            state = torch.load(local, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - truncated or unsafe: start over, and say so
            print(f"warning: run {run_id}'s snapshot is unreadable ({type(e).__name__}); training from epoch 1",
                  file=sys.stderr)  # fmt: skip
            return None
    return state if valid_state(state, digest) else None
