"""Folders and files a command writes (the working directory of checkpoints, the report folder, the
storage file and its locks), checked before anything is trained: one that cannot be created or written
is a one-line error naming it, never a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rethink.errors import UserError


class PathError(UserError):
    """A folder or file a command needs that cannot be created, read or written."""


def writable_dir(path: Path | str, what: str) -> Path:
    """Create `path` with its parents if needed and check that a file can be written in it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".rethink-write-check-"):
            pass
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise PathError(f"{what} {path}: cannot be created or written ({why}); give a folder you can write") from None
    return path
