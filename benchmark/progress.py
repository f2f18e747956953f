"""What a training run shows while it runs, each piece carrying its own state.

- :class:`EpochBar`: a rich bar per epoch (batch, mean loss, samples/s, ETA) on a terminal, redrawn at most
  every 0.2 s.
- :class:`ProgressFile`: for sweeps, a small JSON file with epoch, position, last validation metrics and ETA,
  rewritten atomically (at most once a second unless forced).
- :class:`StepLog`: every ``log_steps`` steps the mean training loss, learning rate, samples/s and epoch
  for the callbacks' ``on_step``.
- :func:`epoch_line`: the line logged (and printed) after each epoch's validation.
"""

from __future__ import annotations

import logging
import os
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .util import atomic_write_json

log = logging.getLogger("ctrbench.train")


class EpochBar:
    """``with EpochBar(console, enabled, epoch, total, done) as bar: bar.update(...)``."""

    def __init__(self, console: Console, enabled: bool, epoch: int, total: int, done: int):
        self.enabled, self.total = enabled, total
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[rate]:,.0f} samples/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not enabled,
        )
        self._start = (epoch, done)
        self._updated = 0.0

    def __enter__(self) -> "EpochBar":
        self.progress.__enter__()
        epoch, done = self._start
        self.task = self.progress.add_task(
            f"epoch {epoch}", total=self.total, completed=done, loss=float("nan"), rate=0.0
        )
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, batch: int, loss, rate) -> None:
        """Redraw with the epoch's position; ``loss``/``rate`` are called only when it redraws (reading a
        device loss waits for the device)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._updated < 0.2 and batch != self.total:
            return
        self._updated = now
        self.progress.update(self.task, completed=batch, loss=loss(), rate=rate(now))


class ProgressFile:
    """The JSON progress file of a run (``None`` path: nothing is written)."""

    def __init__(self, path: str | None, enabled: bool = True):
        self.path = path if enabled else None
        self.epochs = self.batches = 0
        self.started: float | None = None
        self.steps0 = 0
        self._last = 0.0

    def start(self, state, epochs: int, batches: int) -> None:
        self.started, self.steps0 = time.perf_counter(), state.total_steps
        self.epochs, self.batches = epochs, batches

    def write(self, status: str, state, force: bool = False) -> None:
        if not self.path:
            return
        now = time.perf_counter()
        if not force and now - self._last < 1.0:
            return
        self._last = now
        epochs, batches = self.epochs, self.batches
        last = state.history[-1] if state.history else {}
        elapsed = now - self.started if self.started else 0.0
        done = state.epoch * batches + state.batch
        total = max(epochs * batches, 1)
        steps = state.total_steps - self.steps0
        eta = elapsed / steps * max(total - done, 0) if steps > 0 and status != "done" else 0.0
        payload = {
            "pid": os.getpid(),
            "status": status,
            "epoch": state.epoch + (0 if status == "done" else 1),
            "epochs": epochs,
            "batch": state.batch,
            "batches": batches,
            "steps": state.total_steps,
            "fraction": min(done / total, 1.0),
            "samples_per_second": state.train_samples / max(state.train_seconds, 1e-9),
            "valid": {k: v for k, v in last.items() if k not in ("epoch", "step", "lr")},
            "best": state.best_metric,
            "best_epoch": state.best_epoch,
            "elapsed": elapsed,
            "eta": eta,
            "resumed": state.resumed,
            "time": time.time(),
        }
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            atomic_write_json(self.path, payload)
        except OSError:
            pass


class StepLog:
    """Accumulates the step losses; every ``every`` steps returns the logs for ``on_step``."""

    def __init__(self, every: int, samples: int):
        self.every = max(1, int(every))
        self.loss, self.n, self.time, self.samples = None, 0, time.perf_counter(), samples

    def __call__(self, loss, state, lr) -> dict | None:
        """Add the step's (device) loss; after every ``every``-th step the logs (``lr()`` read then)."""
        self.loss = loss if self.loss is None else self.loss + loss
        self.n += 1
        if state.total_steps % self.every:
            return None
        now = time.perf_counter()
        logs = {
            "loss": float(self.loss) / self.n,
            "lr": lr(),
            "samples_per_second": (state.train_samples - self.samples) / max(now - self.time, 1e-9),
            "epoch": state.epoch + 1,
        }
        self.loss, self.n, self.time, self.samples = None, 0, now, state.train_samples
        return logs


def epoch_line(epoch: int, loss: float, logs: dict, lr: float, best: bool) -> str:
    """``logs``: the epoch-end validation's metrics (empty when the epoch did not end on one)."""
    if not logs:
        return f"epoch {epoch}: train loss {loss:.6f}  lr {lr:.2e}"
    metrics = " ".join(f"{k}={v:.6f}" for k, v in logs.items())
    return f"epoch {epoch}: train loss {loss:.6f}  valid {metrics}  lr {lr:.2e}{'  (best)' if best else ''}"
