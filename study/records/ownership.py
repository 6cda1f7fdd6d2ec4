"""One owner per spec on single-host storage: a lock file beside the SQLite or journal file, held (flock)
for the life of the process that runs or reports the spec. The kernel releases it when that process
dies in any way, SIGKILL included, so a lock that is held always names a live process. PostgreSQL
studies are shared by design (workers on many hosts); heartbeats guard them instead."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from study.plan.spec import SpecError

from .paths import PathError
from .secrets import redact
from .storage import local_storage_path

_HELD: dict[Path, int] = {}  # lock path -> file descriptor, for the life of the process


class SpecBusy(SpecError):
    """Another live process owns the spec on this storage."""


def lock_path(storage_url: str, spec_name: str) -> Path | None:
    """Where the spec's lock lives, or None for shared storages (PostgreSQL, MySQL)."""
    path = local_storage_path(storage_url)
    if path is None or path.is_dir():  # a folder is refused by make_storage, with the reason
        return None
    return path.with_name(path.name + ".locks") / f"{spec_name}.lock"


OWNER_WAITS = 40  # up to 2 s for a fresh owner's record (it writes it right after taking the lock)


def claim(storage_url: str, spec_name: str) -> None:
    """Own `spec_name` on this storage until the process ends; refuse with who owns it otherwise."""
    path = lock_path(storage_url, spec_name)
    if path is None or path in _HELD:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise PathError(
            f"--storage {redact(storage_url)}: its lock file {path} cannot be created ({e.strerror or e}); "
            f"give a storage file in a folder you can write"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _read_owner(fd)
        for _ in range(OWNER_WAITS):  # the owner took the lock a moment ago: its record is being written
            if "pid" in owner:
                break
            time.sleep(0.05)
            owner = _read_owner(fd)
        os.close(fd)
        raise SpecBusy(
            f"spec {spec_name!r} on storage {redact(storage_url)} is in use by process {owner.get('pid', '?')} "
            f"({owner.get('command', 'rethink')}, started {owner.get('started', '?')} on {owner.get('host', '?')}); "
            f"wait for it to end, stop it (kill -INT {owner.get('pid', 'PID')}), or use another --storage"
        ) from None
    os.ftruncate(fd, 0)
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["rethink", *sys.argv[1:3]]),  # the subcommand and spec, never a URL
    }
    os.write(fd, json.dumps(owner).encode())
    _HELD[path] = fd


def release_all() -> None:
    """Give up every spec this process owns (the kernel does it anyway when the process ends)."""
    for path, fd in list(_HELD.items()):
        os.close(fd)
        del _HELD[path]


def _read_owner(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096) or b"{}")
    except (OSError, ValueError):
        return {}


def owner_alive(pid: int | None, host: str | None) -> bool:
    """Whether a trial's owner may be alive: a live process on this host other than this one, or any
    process on another host (its death cannot be proven from here)."""
    if host is not None and host != socket.gethostname():
        return True
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
