"""Progress lines for long work, on stderr so stdout stays for results."""

from __future__ import annotations

import sys
import time

from rethink.train import Callback, EpochMetrics


def eta(seconds: float) -> str:
    """A duration as a person reads it: 42 s, 3 min 05 s, 1 h 02 min."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class PrintProgress(Callback):
    """Every `every` epochs (and the last): epoch, lr, train loss and accuracy, the evaluation accuracy when
    it was scored, images/s, and the time left at the mean epoch time so far."""

    def __init__(self, total_epochs: int, label: str = "", every: int = 1):
        self.total, self.label, self.every = total_epochs, label, max(1, every)
        self.start = time.perf_counter()

    def on_epoch_end(self, m: EpochMetrics, model) -> None:
        done = m.epoch + 1
        if done % self.every == 0 or done == self.total:
            scored = "" if m.eval_acc != m.eval_acc else f"  eval acc {m.eval_acc:.3f}"  # NaN: not scored yet
            left = (time.perf_counter() - self.start) / done * (self.total - done)
            remaining = f"  ETA {eta(left)}" if done < self.total else ""
            print(
                f"{self.label}epoch {done}/{self.total}  lr {m.lr:.4g}  loss {m.train_loss:.4f}  "
                f"train acc {m.train_acc:.3f}{scored}  {m.images_per_s:,.0f} img/s{remaining}",
                file=sys.stderr,
                flush=True,
            )
