"""What `rethink specs` and `--dry-run` keep on disk between looks (this machine's training rate per model, each
spec's cost by content), so a second look does not time or build again. One folder: RETHINK_CACHE_DIR, else
$XDG_CACHE_HOME/rethink or ~/.cache/rethink; RETHINK_CACHE_DIR set empty keeps nothing. A file is JSON, written
whole through a temporary file (a reader never sees half of one); one that cannot be read or written costs the
next look a computation, never an error."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path

CACHE_ENV = "RETHINK_CACHE_DIR"  # set to an empty string: nothing is kept, everything computed every time
REPO = Path(__file__).resolve().parents[2]
COST_CODE = ("rethink", "study/plan")  # the code a spec's cost is computed by


def kept_file(name: str) -> Path | None:
    """Where the file `name` is kept; None when RETHINK_CACHE_DIR is set empty."""
    root = os.environ.get(CACHE_ENV)
    if root == "":
        return None
    folder = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rethink"
    return folder / name


def read_kept(path: Path | None) -> dict:
    """The entries kept in `path` by key; none when there is no file or it cannot be read."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def keep(path: Path | None, key: str, entry: dict, stale: Callable[[dict], bool] = lambda e: False) -> None:
    """Add one entry under `key`, leaving out the entries `stale` says no look will read again."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = {k: e for k, e in read_kept(path).items() if not (isinstance(e, dict) and stale(e))}
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(kept | {key: entry}, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


@cache
def code_digest() -> str:
    """A digest of the code that computes a spec's cost (every .py file of rethink/ and study/plan/) and of the
    libraries that build its models: a change to either computes the kept costs anew."""
    h = hashlib.sha256()
    for folder in COST_CODE:
        for path in sorted((REPO / folder).rglob("*.py")):
            h.update(path.relative_to(REPO).as_posix().encode())
            h.update(path.read_bytes())
    for package in ("torch", "torchvision", "timm", "torch-pruning"):
        try:
            h.update(f"{package}=={metadata.version(package)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{package} absent".encode())
    return h.hexdigest()[:24]
