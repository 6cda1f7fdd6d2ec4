"""Progress lines for long work, on stderr so stdout stays for results."""

from __future__ import annotations

import sys

from rethink.train import Callback, EpochMetrics


class PrintProgress(Callback):
    def __init__(self, total_epochs: int, label: str = "", every: int = 1):
        self.total, self.label, self.every = total_epochs, label, max(1, every)

    def on_epoch_end(self, m: EpochMetrics, model) -> None:
        if (m.epoch + 1) % self.every == 0 or m.epoch + 1 == self.total:
            scored = "" if m.eval_acc != m.eval_acc else f"  eval acc {m.eval_acc:.3f}"  # NaN: not scored yet
            print(
                f"{self.label}epoch {m.epoch + 1}/{self.total}  lr {m.lr:.4g}  loss {m.train_loss:.4f}  "
                f"train acc {m.train_acc:.3f}{scored}  {m.images_per_s:,.0f} img/s",
                file=sys.stderr,
                flush=True,
            )
