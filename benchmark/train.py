"""The one training loop for every model.

Semantics follow fuxictr's ``BaseModel.fit`` (what the papers' numbers were produced with):
evaluate on the validation split every ``eval_steps`` batches (once per epoch by default); on an
improvement of the ``monitor`` by more than 1e-6 save the best checkpoint, otherwise count a
non-improvement and, with ``reduce_lr_on_plateau``, multiply the learning rate by 0.1 (floor 1e-6);
stop after ``early_stop_patience`` consecutive non-improvements; reload the best checkpoint at the end.
Gradient norms are clipped to ``max_gradient_norm``.

On top of that: a rich progress bar per epoch (batch, loss, samples/s, ETA), models' auxiliary
optimisers and step hooks, seeded per-epoch batch order (so a run can resume mid-epoch), and full
metrics on valid/test after training (fuxictr only evaluates monitored metrics during training).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from fuxictr.metrics import evaluate_metrics
from fuxictr.utils import Monitor
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

log = logging.getLogger("ctrbench.train")


@dataclass
class TrainState:
    """Everything the loop needs to continue where it stopped."""

    epoch: int = 0                  # current epoch (0-based)
    batch: int = 0                  # batches of the current epoch already done
    total_steps: int = 0
    best_metric: float | None = None
    best_epoch: int = 0
    stopping_steps: int = 0
    stop: bool = False
    history: list = field(default_factory=list)   # one dict per evaluation
    train_seconds: float = 0.0
    train_samples: int = 0


class Trainer:
    """Drives a fuxictr ``BaseModel`` subclass through fit / evaluate."""

    def __init__(self, model, params: dict, console: Console | None = None):
        self.model = model
        self.params = params
        self.console = console or Console(stderr=True)
        self.monitor = Monitor(kv=params.get("monitor", "AUC"))
        self.mode = params.get("monitor_mode", "max")
        self.patience = int(params.get("early_stop_patience", 2))
        self.max_norm = float(params.get("max_gradient_norm", 10.0))
        self.reduce_lr = bool(params.get("reduce_lr_on_plateau", True))
        self.state = TrainState()
        self.show_progress = bool(params.get("verbose", 1)) and self.console.is_terminal

    # ---- steps --------------------------------------------------------------------------------
    def optimizers(self):
        return [self.model.optimizer] + list(getattr(self.model, "aux_optimizers", []))

    def train_step(self, batch) -> float:
        model = self.model
        for opt in self.optimizers():
            opt.zero_grad(set_to_none=True)
        return_dict = model.forward(batch)
        y_true = model.get_labels(batch)
        loss = model.compute_loss(return_dict, y_true)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), self.max_norm)
        for opt in self.optimizers():
            opt.step()
        model.on_train_step_end(self.state.total_steps)
        return float(loss.detach())

    def predict(self, loader) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        model = self.model
        model.eval()
        preds, labels, groups = [], [], []
        group_id = model.feature_map.group_id
        with torch.no_grad():
            for batch in loader:
                preds.append(model.forward(batch)["y_pred"].detach().float().cpu().reshape(-1))
                labels.append(model.get_labels(batch).detach().float().cpu().reshape(-1))
                if group_id is not None:
                    groups.append(batch[group_id].reshape(-1))
        y_pred = torch.cat(preds).numpy().astype(np.float64)
        y_true = torch.cat(labels).numpy().astype(np.float64)
        group = torch.cat(groups).numpy() if groups else None
        return y_true, y_pred, group

    def evaluate(self, loader, metrics=None) -> dict[str, float]:
        y_true, y_pred, group = self.predict(loader)
        metrics = list(metrics or self.params.get("metrics", ["logloss", "AUC"]))
        return {k: float(v) for k, v in evaluate_metrics(y_true, y_pred, metrics, group).items()}

    # ---- early stopping -------------------------------------------------------------------------
    def _improved(self, value: float) -> bool:
        best = self.state.best_metric
        if best is None:
            return True
        return value > best + 1e-6 if self.mode == "max" else value < best - 1e-6

    def checkpoint_and_earlystop(self, logs: dict) -> None:
        value = float(self.monitor.get_value(logs))
        state = self.state
        if self._improved(value):
            state.best_metric, state.best_epoch, state.stopping_steps = value, state.epoch + 1, 0
            self.model.save_weights(self.model.checkpoint)
            log.info("Save best model: monitor(%s)=%.6f", self.mode, value)
        else:
            state.stopping_steps += 1
            log.info("Monitor(%s)=%.6f STOP!", self.mode, value)
            if self.reduce_lr:
                lr = self.model.lr_decay()
                log.info("Reduce learning rate on plateau: %.6f", lr)
        if state.stopping_steps >= self.patience:
            state.stop = True
            log.info("Early stop at epoch %d", state.epoch + 1)

    def validate(self, valid_loader) -> dict:
        metrics = self.monitor.get_metrics()
        logs = self.evaluate(valid_loader, metrics)
        self.state.history.append({"epoch": self.state.epoch + 1, "step": self.state.total_steps, **logs,
                                   "lr": self.model.optimizer.param_groups[0]["lr"]})
        self.checkpoint_and_earlystop(logs)
        self.model.train()
        return logs

    # ---- fit --------------------------------------------------------------------------------------
    def fit(self, train_loader, valid_loader, epochs: int, on_checkpoint=None) -> TrainState:
        """Train until early stopping or ``epochs``; ``on_checkpoint(trainer)`` runs after each eval."""
        os.makedirs(os.path.dirname(self.model.checkpoint), exist_ok=True)
        eval_steps = self.params.get("eval_steps") or len(train_loader)
        state = self.state
        while state.epoch < epochs and not state.stop:
            train_loader.set_epoch(state.epoch)
            self.model.train()
            started = time.perf_counter()
            total_loss, n_batches = 0.0, 0
            with self._progress(len(train_loader)) as progress:
                task = progress.add_task(f"epoch {state.epoch + 1}", total=len(train_loader),
                                         completed=state.batch, loss=float("nan"), rate=0.0)
                for batch in train_loader.iter_from(state.batch):
                    loss = self.train_step(batch)
                    rows = len(next(iter(batch.values())))
                    state.batch += 1
                    state.total_steps += 1
                    state.train_samples += rows
                    total_loss += loss
                    n_batches += 1
                    elapsed = time.perf_counter() - started
                    progress.update(task, advance=1, loss=total_loss / n_batches,
                                    rate=state.train_samples / max(state.train_seconds + elapsed, 1e-9))
                    if state.total_steps % eval_steps == 0 and state.batch < len(train_loader):
                        state.train_seconds += time.perf_counter() - started
                        started = time.perf_counter()
                        self.validate(valid_loader)
                        if on_checkpoint:
                            on_checkpoint(self)
                        if state.stop:
                            break
            state.train_seconds += time.perf_counter() - started
            if not state.stop:
                logs = self.validate(valid_loader)
                self._epoch_line(total_loss / max(n_batches, 1), logs)
            state.epoch += 1
            state.batch = 0
            if on_checkpoint:
                on_checkpoint(self)
        if os.path.isfile(self.model.checkpoint):
            self.model.load_weights(self.model.checkpoint)
        return state

    def _epoch_line(self, loss: float, logs: dict) -> None:
        metrics = " ".join(f"{k}={v:.6f}" for k, v in logs.items())
        lr = self.model.optimizer.param_groups[0]["lr"]
        line = (f"epoch {self.state.epoch + 1}: train loss {loss:.6f}  valid {metrics}  lr {lr:.2e}"
                f"{'  (best)' if self.state.stopping_steps == 0 else ''}")
        log.info(line)
        if self.params.get("verbose", 1):
            self.console.print(line, highlight=False)

    def _progress(self, total: int) -> Progress:
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:,.0f} samples/s"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True,
                        disable=not self.show_progress)


def state_dict(trainer: Trainer) -> dict:
    return asdict(trainer.state)
