"""Folders and files a command writes (the working directory of checkpoints, the report folder, the
storage file and its locks), checked before anything is trained: one that cannot be created or written
is a one-line error naming it, never a traceback."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rethink.errors import UserError


class PathError(UserError):
    """A folder or file a command needs that cannot be created, read or written."""


def writable_dir(path: Path | str, what: str) -> Path:
    """Check that `path` can be created (or, when it exists, written) without creating anything: a refused
    command leaves no folder behind. The command makes the folder when it first writes there."""
    path = Path(path).absolute()
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent  # the nearest part of the path that exists
    why = None
    if not probe.is_dir():
        why = f"Not a directory: {probe} is a file"
    elif not os.access(probe, os.W_OK | os.X_OK):
        why = f"Permission denied on {probe}"
    elif probe == path:
        try:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".rethink-write-check-"):
                pass
        except OSError as e:
            why = e.strerror or type(e).__name__
    if why:
        raise PathError(f"{what} {path}: cannot be created or written ({why}); give a folder you can write")
    return path
