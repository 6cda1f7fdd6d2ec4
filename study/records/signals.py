"""SIGINT and SIGTERM while a tracking record is being written: held until the write is done.

A Ctrl-C raises KeyboardInterrupt wherever the main thread is. Landing inside an MLflow write, it can leave a
run made in the store but unknown to this process (so never ended: RUNNING for ever), or a store transaction
half done. `run_guarded` (lifecycle.py) installs `handle`; code that writes a record and notes what it wrote
runs under `shielded()`, and a signal that comes meanwhile is raised when the section ends. A second signal
while one is held is raised at once: a user can always stop a write that hangs.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so every handler that ends runs KILLED on Ctrl-C runs too."""


_depth = 0
_held: int | None = None  # the signal that came inside a shielded section, raised when the section ends


def _interrupt(signum: int) -> KeyboardInterrupt:
    return Terminated("terminated (SIGTERM)") if signum == signal.SIGTERM else KeyboardInterrupt()


def handle(signum: int, frame) -> None:
    """The handler `run_guarded` installs for SIGINT and SIGTERM."""
    global _held
    if _depth == 0 or _held is not None:
        _held = None
        raise _interrupt(signum)
    _held = signum


def install() -> dict[int, object]:
    """Install `handle`; returns the previous handlers for `restore`. Main thread only (as signal.signal)."""
    return {s: signal.signal(s, handle) for s in HANDLED}


def restore(previous: dict[int, object]) -> None:
    global _held
    for s, h in previous.items():
        signal.signal(s, h)
    _held = None


@contextmanager
def shielded(raise_held: bool = True) -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the block runs (nested blocks: until the outermost ends), then raise the
    held one; `raise_held=False` drops it (the process is already ending for a signal). Signals interrupt
    only the main thread, so elsewhere (training lanes, Ray's threads) the block just runs."""
    global _depth, _held
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _held is not None:
            signum, _held = _held, None
            if raise_held:
                raise _interrupt(signum)
