"""The one training loop for every model.

Semantics follow fuxictr's ``BaseModel.fit`` (what the papers' numbers were produced with):
evaluate on the validation split every ``eval_steps`` batches (once per epoch by default); on an
improvement of the ``monitor`` by more than 1e-6 save the best checkpoint, otherwise count a
non-improvement and, with ``reduce_lr_on_plateau``, multiply the learning rate by 0.1 (floor 1e-6);
stop after ``early_stop_patience`` consecutive non-improvements; reload the best checkpoint at the end.
Gradient norms are clipped to ``max_gradient_norm``. With ``eval_steps`` set, validations happen every
``eval_steps`` steps only (as fuxictr's ``train_epoch``: no extra one at an epoch's end).

A training loss that becomes NaN or inf ends the run at that step with one error line (epoch, step,
learning rate, what to try); no record is written and the resume state saved before that step is kept
(:class:`LossGuard`: checked per step on a CPU, at the next pause on a GPU or under torchrun).

On top of that:

- **Resume.** ``save_state`` writes everything needed to continue bit-identically (the model, every
  optimiser of ``model.optimizers()``, the GradScaler, the ``TrainState`` and the RNG states; the file and
  when it is due: ``benchmark/checkpoint.py``) after every evaluation and epoch, every
  ``checkpoint_steps`` batches and every ``checkpoint_seconds`` (default 300, 0 = off);
  ``resume_state: false`` turns it off. The loader's per-epoch seeded permutation plus
  ``iter_from(batch)`` replays the rest of the interrupted epoch. Models that keep state outside
  parameters and buffers expose it through ``nn.Module.get_extra_state``.
- **GPU path.** Batches move host->device with ``non_blocking`` copies from pinned memory, one batch
  ahead of the step; ``amp: bf16|fp16`` runs forward passes under ``torch.autocast`` (fp16 with a
  GradScaler; the loss and ``y_pred = sigmoid(logit)`` are computed in fp32); ``compile: true`` (or a
  backend name) wraps the model in ``torch.compile``; ``fused_optimizer: true`` switches Adam/AdamW
  to torch's fused kernel (a large share of a CPU step with big embedding tables). All off by default.
- **Weights.** The best checkpoint is loaded back at the end only when this run (or the run it
  resumes) wrote it; a run never evaluates weights it did not train. Weights files load with
  ``weights_only=True`` (:func:`load_weights`).
- **Data parallel.** The trainer sees torchrun only through its ``DistContext``: ``train_batches``/
  ``eval_batches`` (this rank's rows of each batch), ``wrap`` (DDP around the model the step calls)
  and the collectives (``barrier``, ``any``, ``all_gather``, ``gather``); see ``benchmark/distributed.py``.
- **Callbacks.** ``callbacks=[obj, ...]``: objects with any of ``on_step(step, logs)`` (every
  ``log_steps`` steps, default 50: mean train loss, lr, samples/s, epoch), ``on_eval(epoch, metrics)``
  (each validation: epoch, step, every metric of ``monitor`` and ``metrics``, lr) and
  ``on_end(record)`` (called by the runner with the run record once it is written) and ``close()``.
  They run on rank 0's trainer only when given; an exception they raise (``optuna.TrialPruned``)
  ends ``fit`` and no record is written.
- Progress: a rich bar per epoch and, for sweeps, a small JSON file (``progress_file``); see
  ``benchmark/progress.py``.
- Models' auxiliary optimisers and ``on_train_step_end`` hooks, full metrics on valid/test after
  training (fuxictr only evaluates monitored metrics during training), the time spent waiting for
  the loader, and the test-set prediction time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from fuxictr.utils import Monitor
from rich.console import Console

from model_zoo.base import clip_grad_norm

from .checkpoint import ResumeState, load_weights, save_torch
from .distributed import DistContext
from .errors import CTRBenchError
from .metrics import evaluate_metrics
from .progress import EpochBar, ProgressFile, StepLog, epoch_line
from .util import sync

log = logging.getLogger("ctrbench.train")


@dataclass
class TrainState:
    """Everything the loop needs to continue where it stopped."""

    epoch: int = 0  # current epoch (0-based)
    batch: int = 0  # batches of the current epoch already done
    total_steps: int = 0
    best_metric: float | None = None
    best_epoch: int = 0
    stopping_steps: int = 0
    stop: bool = False
    history: list = field(default_factory=list)  # one dict per evaluation
    train_seconds: float = 0.0
    train_samples: int = 0
    loader_seconds: float = 0.0  # time spent waiting for the next batch
    epoch_loss: float = 0.0  # running loss sum of the current epoch (for the epoch line)
    epoch_batches: int = 0
    resumed: int = 0  # how many times this run was resumed


def amp_dtype(value) -> torch.dtype | None:
    """``amp`` config value -> autocast dtype (None = off)."""
    if value in (None, False, 0) or str(value).lower() in ("", "none", "off", "no", "false", "fp32"):
        return None
    name = str(value).lower()
    if name in ("bf16", "bfloat16"):
        return torch.bfloat16
    if name in ("fp16", "float16", "half"):
        return torch.float16
    raise CTRBenchError(f"amp={value!r}: use amp: bf16 or amp: fp16 (or leave it unset for fp32)")


def amp_name(value) -> str | None:
    dtype = amp_dtype(value)
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype)


@dataclass
class TrainResult:
    """What one training run produced: the metrics of the weights it trained and how it got there.
    The run record is built from this (``benchmark/runner.py``)."""

    valid: dict
    test: dict | None
    best_epoch: int
    epochs_run: int
    history: list
    train_seconds: float  # wall time of fit
    seconds_per_epoch: float
    samples_per_second: float
    loader_wait_pct: float
    infer_ms_per_100: float | None  # test-set prediction time per 100 samples
    fused_optimizer: bool
    world_size: int
    resumed: int

    def as_record(self) -> dict:
        return asdict(self)

    @classmethod
    def build(
        cls, trainer, state: TrainState, valid: dict, test: dict | None, seconds: float
    ) -> "TrainResult":
        """The result of ``trainer`` after ``fit`` (``seconds`` of wall time) and the final evaluations."""
        infer = None
        if test is not None and trainer.last_predict_rows:
            infer = round(trainer.last_predict_seconds * 1000.0 / trainer.last_predict_rows * 100.0, 4)
        busy = max(state.train_seconds, 1e-9)
        return cls(
            valid=valid,
            test=test,
            best_epoch=state.best_epoch,
            epochs_run=state.epoch,
            history=state.history,
            train_seconds=round(seconds, 3),
            seconds_per_epoch=round(state.train_seconds / max(1, state.epoch), 3),
            samples_per_second=round(state.train_samples / busy, 1),
            loader_wait_pct=round(100.0 * state.loader_seconds / busy, 3),
            infer_ms_per_100=infer,
            fused_optimizer=trainer.fused_optimizer,
            world_size=trainer.dist.world_size,
            resumed=state.resumed,
        )


def use_fused_optimizers(optimizers, wanted) -> bool:
    """``fused_optimizer: true``: Adam/AdamW take torch's fused kernel (one pass over each
    parameter instead of several; the same update up to float rounding)."""
    if not wanted or str(wanted).lower() in ("false", "no", "off", "0"):
        return False
    fused = False
    for opt in optimizers:
        if type(opt) not in (torch.optim.Adam, torch.optim.AdamW):
            continue
        params = [p for g in opt.param_groups for p in g["params"]]
        if params and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params):
            for group in opt.param_groups:
                group["fused"], group["foreach"] = True, False
            fused = True
    return fused


def step_modules(model, params: dict, dist: DistContext):
    """The modules a training step and an evaluation call: the model, under torchrun wrapped in DDP, with
    ``compile: true`` (or a backend name) wrapped in ``torch.compile``."""
    train_module = eval_module = model
    if dist.enabled:
        train_module = dist.wrap(model, bool(params.get("ddp_find_unused_parameters", True)))
    compile_opt = params.get("compile")
    if compile_opt:
        backend = (
            "inductor" if compile_opt is True or str(compile_opt).lower() == "true" else str(compile_opt)
        )
        train_module = torch.compile(train_module, backend=backend)
        eval_module = torch.compile(model, backend=backend) if dist.enabled else train_module
    return train_module, eval_module


def fp32_outputs(model, return_dict: dict, amp) -> dict:
    """Under autocast: outputs back to fp32, and y_pred recomputed from the fp32 logit."""
    if amp is None:
        return return_dict
    out = {
        k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in return_dict.items()
    }
    if "logit" in out and "y_pred" in out and hasattr(model, "output_activation"):
        out["y_pred"] = model.output_activation(out["logit"])
    return out


def device_batches(trainer, loader, skip: int):
    """Batches from ``skip`` on: sharded for the trainer's rank, moved to its device one batch ahead,
    with the time spent waiting for the loader added to its state."""
    it = trainer.dist.train_batches(loader.iter_from(skip))
    pending = None
    while True:
        t0 = time.perf_counter()
        try:
            batch, weight, rows = next(it)
        except StopIteration:
            break
        trainer.state.loader_seconds += time.perf_counter() - t0
        item = (trainer._to_device(batch), weight, rows)
        if pending is not None:
            yield pending
        pending = item
    if pending is not None:
        yield pending


class LossGuard:
    """Finds the first training step whose loss is NaN or inf (a prediction that is not finite makes the
    step's loss NaN, see ``Trainer.train_step``). On a lone CPU process each loss is checked as it comes
    (reading a CPU tensor waits for nothing); on a GPU or under torchrun the first bad step is kept on the
    device (no host sync per step) and read where the loop waits for the device anyway (``check``)."""

    def __init__(self, device: torch.device, dist: DistContext):
        self.eager = device.type == "cpu" and not dist.enabled
        self.dist, self.device = dist, device
        self.first_bad = None  # device tensor: the first bad step, -1 while there is none

    def step(self, loss: torch.Tensor, step: int) -> bool:
        """Whether ``loss`` (of step ``step``) shows the run diverged (eager mode only)."""
        if self.eager:
            return not bool(torch.isfinite(loss))
        bad = ~torch.isfinite(loss)
        if self.first_bad is None:
            self.first_bad = torch.full((), -1, dtype=torch.int64, device=loss.device)
        self.first_bad = torch.where(bad & (self.first_bad < 0), step, self.first_bad)
        return False

    def check(self) -> int | None:
        """The first bad step since the last check on any rank (None: none); every rank calls it."""
        if self.eager:
            return None
        local = int(self.first_bad) if self.first_bad is not None else -1
        self.first_bad = None
        bad = [s for s in self.dist.all_gather(local) if s >= 0]
        return min(bad) if bad else None

    @staticmethod
    def error(trainer, step: int, what: str) -> CTRBenchError:
        """The one line for a run whose loss went NaN/inf at ``step``: where, at which learning rate, what
        to try, and the resume state that is kept (saved before that step)."""
        state, resume, max_norm = trainer.state, trainer.resume, trainer.max_norm
        batch = step - (state.total_steps - state.batch)
        lr = trainer.lr()
        kept = (
            f"the resume state saved at step {resume.saved_step} is kept ({resume.path})"
            if resume.path and resume.saved_step is not None
            else "no resume state was saved before it"
        )
        return CTRBenchError(
            f"training diverged at epoch {state.epoch + 1}, step {step} (batch {batch} of the epoch): "
            f"{what.splitlines()[0]} with learning rate {lr:g}; lower learning_rate (e.g. --set "
            f"learning_rate={min(lr / 10, 1e-3):g}) or clip gradients harder (e.g. --set max_gradient_norm="
            f"{min(max_norm / 10, 1) if max_norm > 0 else 1:g}, now {max_norm:g}); no record "
            f"was written and {kept}"
        )


class StepMeter:
    """The steps of a trainer since its last pause: each one taken and counted, their losses summed on the
    device and the training clock running, so that a step waits for nothing; ``book`` adds them to the
    trainer's state where the loop pauses anyway. A step whose loss is NaN or inf ends the run
    (:class:`LossGuard`: at once on a lone CPU, else at the next ``book``)."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.guard = LossGuard(trainer.device, trainer.dist)
        self.start()

    def start(self) -> None:
        """A new stretch of steps: the clock starts now, no loss is pending."""
        self.started = time.perf_counter()
        self.loss_sum, self.count = None, 0

    def take(self, batch, weight: float, rows: int) -> torch.Tensor:
        """One ``train_step`` of the trainer, counted in its state; returns the detached loss."""
        trainer, state = self.trainer, self.trainer.state
        step = state.total_steps + 1
        try:
            loss = trainer.train_step(batch, weight)
        except RuntimeError as exc:  # e.g. Adam's step size overflows float32 at a huge learning rate
            if "overflow" not in str(exc):
                raise
            raise self.guard.error(trainer, step, f"the optimiser step overflowed ({exc})")
        if self.guard.step(loss, step):
            raise self.guard.error(trainer, step, f"the training loss is {float(loss)}")
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        self.count += 1
        state.batch += 1
        state.total_steps += 1
        state.train_samples += rows
        return loss

    def mean_loss(self) -> float:
        """The mean loss of the epoch so far (booked and pending steps)."""
        state = self.trainer.state
        return (state.epoch_loss + float(self.loss_sum)) / (state.epoch_batches + self.count)

    def samples_per_second(self, now: float) -> float:
        state = self.trainer.state
        return state.train_samples / max(state.train_seconds + now - self.started, 1e-9)

    def book(self) -> None:
        """Add the pending step losses and the training time since the clock started to the state (waits
        for the device). A step whose loss was not finite ends the run here, before anything is saved."""
        trainer = self.trainer
        state = trainer.state
        bad = self.guard.check()
        if bad is not None:
            raise self.guard.error(trainer, bad, "the training loss is not finite")
        if self.loss_sum is not None:
            state.epoch_loss += float(self.loss_sum)
            state.epoch_batches += self.count
            self.loss_sum, self.count = None, 0
        sync(trainer.device)
        state.train_seconds += time.perf_counter() - self.started


class EarlyStopping:
    """fuxictr's rule after each validation: on an improvement of ``monitor`` by more than 1e-6 save the
    best checkpoint, else count a non-improvement and (``reduce_lr_on_plateau``) decay the learning
    rate; stop after ``early_stop_patience`` non-improvements in a row."""

    def __init__(self, params: dict):
        self.monitor = Monitor(kv=params.get("monitor", "AUC"))
        self.mode = params.get("monitor_mode", "max")
        self.patience = int(params.get("early_stop_patience", 2))
        self.reduce_lr = bool(params.get("reduce_lr_on_plateau", True))

    def improved(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value > best + 1e-6 if self.mode == "max" else value < best - 1e-6

    def __call__(self, trainer, logs: dict) -> None:
        value = float(self.monitor.get_value(logs))
        state, model = trainer.state, trainer.model
        if self.improved(value, state.best_metric):
            state.best_metric, state.best_epoch, state.stopping_steps = value, state.epoch + 1, 0
            if trainer.dist.is_main:
                save_torch(model.state_dict(), model.checkpoint)
            log.info("Save best model: monitor(%s)=%.6f", self.mode, value)
        else:
            state.stopping_steps += 1
            log.info("Monitor(%s)=%.6f STOP!", self.mode, value)
            if self.reduce_lr:
                lr = model.lr_decay()
                log.info("Reduce learning rate on plateau: %.6f", lr)
        if state.stopping_steps >= self.patience:
            state.stop = True
            log.info("Early stop at epoch %d", state.epoch + 1)
        trainer.dist.barrier()


class Trainer:
    """Drives a fuxictr ``BaseModel`` subclass through fit / evaluate."""

    def __init__(
        self,
        model,
        params: dict,
        console: Console | None = None,
        dist: DistContext | None = None,
        state_file: str | None = None,
        progress_file: str | None = None,
        config_hash: str | None = None,
        callbacks=None,
    ):
        self.model = model
        # objects with optional on_step(step, logs) (every log_steps steps: mean loss, lr, samples/s),
        # on_eval(epoch, metrics) (each validation: every metric of ``metrics`` plus epoch, step, lr and
        # evaluation, the 1-based count of evaluations of the run, resumed ones included);
        # an exception they raise (e.g. optuna.TrialPruned) ends fit()
        self.callbacks = list(callbacks or [])
        self.log_steps = max(1, int(params.get("log_steps") or 50))
        self.params = params
        self.console = console or Console(stderr=True)
        self.dist = dist or DistContext()
        self.early_stopping = EarlyStopping(params)
        self.monitor = self.early_stopping.monitor
        self.max_norm = float(params.get("max_gradient_norm", 10.0) or 0.0)
        self.state = TrainState()
        self.show_progress = bool(params.get("verbose", 1)) and self.console.is_terminal and self.dist.is_main
        self.device = torch.device(getattr(model, "device", "cpu"))
        self.amp = amp_dtype(params.get("amp"))
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp == torch.float16 else None
        self.resume = ResumeState.from_params(state_file, params, config_hash, self.dist)
        self.progress_file = ProgressFile(progress_file, enabled=self.dist.is_main)
        self.last_predict_seconds = 0.0
        self.last_predict_rows = 0
        self.meter = StepMeter(self)  # the steps since the last pause: losses, clock, divergence
        self.fused_optimizer = use_fused_optimizers(self.optimizers(), params.get("fused_optimizer", False))
        self.train_module, self.eval_module = step_modules(model, params, self.dist)

    # ---- steps --------------------------------------------------------------------------------
    def optimizers(self):
        """Every optimiser a step steps: the model's own list (the zoo's ``CTRModel.optimizers``), else
        fuxictr's one optimiser."""
        if hasattr(self.model, "optimizers"):
            return list(self.model.optimizers())
        return [self.model.optimizer] + list(getattr(self.model, "aux_optimizers", []))

    def lr(self) -> float:
        return self.model.optimizer.param_groups[0]["lr"]

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp)

    def _to_device(self, batch: dict) -> dict:
        if self.device.type == "cpu":
            return batch
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def train_step(self, batch, weight: float = 1.0) -> torch.Tensor:
        """One optimiser step on a (device) batch; returns the detached loss."""
        model = self.model
        for opt in self.optimizers():
            opt.zero_grad(set_to_none=True)
        with self._autocast():
            return_dict = self.train_module(batch)
        return_dict = fp32_outputs(self.model, return_dict, self.amp)
        finite = None
        if (
            "y_pred" in return_dict
        ):  # a NaN prediction would fail binary cross-entropy (a device assert on CUDA)
            finite = torch.isfinite(return_dict["y_pred"]).all()
            return_dict = {**return_dict, "y_pred": return_dict["y_pred"].nan_to_num(0.5)}
        y_true = model.get_labels(batch)
        loss = model.compute_loss(return_dict, y_true)
        if finite is not None:
            loss = torch.where(finite, loss, torch.nan)
        objective = loss * weight if weight != 1.0 else loss
        if self.scaler is not None:
            self.scaler.scale(objective).backward()
            for opt in self.optimizers():
                self.scaler.unscale_(opt)
        else:
            objective.backward()
        if self.max_norm > 0:
            clip_grad_norm(model, self.max_norm)  # the model: fused tables clipped per field
        if self.scaler is not None:
            for opt in self.optimizers():
                self.scaler.step(opt)
            self.scaler.update()
        else:
            for opt in self.optimizers():
                opt.step()
        model.on_train_step_end(self.state.total_steps)
        return loss.detach()

    def predict(self, loader) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Predictions, labels and group ids of a split (gathered over ranks); times the pass."""
        model = self.model
        model.eval()
        preds, labels, groups = [], [], []
        group_id = model.feature_map.group_id
        sync(self.device)
        started = time.perf_counter()
        rows = 0
        with torch.no_grad():
            for batch in self.dist.eval_batches(loader):
                if group_id is not None:
                    groups.append(batch[group_id].reshape(-1))
                batch = self._to_device(batch)
                with self._autocast():
                    return_dict = self.eval_module(batch)
                return_dict = fp32_outputs(self.model, return_dict, self.amp)
                preds.append(return_dict["y_pred"].detach().float().reshape(-1))
                labels.append(model.get_labels(batch).detach().float().reshape(-1))
                rows += len(preds[-1])
        y_pred = torch.cat(preds).cpu().numpy().astype(np.float64) if preds else np.zeros(0)
        y_true = torch.cat(labels).cpu().numpy().astype(np.float64) if labels else np.zeros(0)
        sync(self.device)
        self.last_predict_seconds = time.perf_counter() - started
        self.last_predict_rows = rows
        group = torch.cat(groups).numpy() if groups else None
        y_true, y_pred, group = self.dist.gather(y_true, y_pred, group)
        return y_true, y_pred, group

    def evaluate(self, loader, metrics=None) -> dict[str, float]:
        y_true, y_pred, group = self.predict(loader)
        metrics = list(metrics or self.params.get("metrics", ["logloss", "AUC"]))
        return {
            k: float(v)
            for k, v in evaluate_metrics(
                y_true, y_pred, metrics, group, self.params.get("logloss_eps")
            ).items()
        }

    # ---- validation and early stopping ------------------------------------------------------------
    def validate(self, valid_loader) -> dict:
        metrics = self.monitor.get_metrics()
        every = self.evaluate(valid_loader, list(dict.fromkeys([*metrics, *self.params.get("metrics", [])])))
        logs = {k: every[k] for k in metrics}  # early stopping and the epoch line see the monitored ones
        lr = self.lr()
        state = self.state  # the history keeps every metric (plot --metric logloss)
        state.history.append({"epoch": state.epoch + 1, "step": state.total_steps, **every, "lr": lr})
        self.early_stopping(self, logs)
        evaluation = {"epoch": state.epoch + 1, "step": state.total_steps, "evaluation": len(state.history)}
        self._notify("on_eval", state.epoch + 1, {**evaluation, **every, "lr": lr})
        self.model.train()
        return logs

    def _notify(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            fn = getattr(callback, hook, None)
            if fn is not None:
                fn(*args)

    # ---- resume state and progress file -----------------------------------------------------------
    def save_state(self) -> None:
        """Write the full training state (``benchmark/checkpoint.py``), then the progress file."""
        if self.resume.save(self.model, self.optimizers(), self.scaler, asdict(self.state)):
            self.write_progress("train", force=True)

    def load_state(self, payload: dict | None = None) -> TrainState:
        """Continue from ``save_state``'s file, the trainer's own ``state_file`` (never a path from
        elsewhere): weights, optimisers, counters, position and RNG, when its config hash is this run's.
        ``payload``: that file as ``checkpoint.read_state`` returned it (the runner checks it first)."""
        payload = self.resume.read() if payload is None else payload
        known = {f.name for f in fields(TrainState)}
        state = TrainState(**{k: v for k, v in payload["trainer"].items() if k in known})
        if state.best_metric is not None and not os.path.isfile(self.model.checkpoint):
            raise CTRBenchError(
                f"the best checkpoint {self.model.checkpoint} of the resumed run is missing; "
                f"delete {self.resume.path} and run without --resume"
            )
        self.resume.restore(payload, self.model, self.optimizers(), self.scaler)
        state.resumed += 1
        self.state = state
        log.info(
            "Resumed from %s at epoch %d, batch %d (step %d)",
            self.resume.path,
            state.epoch + 1,
            state.batch,
            state.total_steps,
        )
        return state

    def remove_state(self) -> None:
        self.resume.remove()

    def write_progress(self, status: str, force: bool = False) -> None:
        self.progress_file.write(status, self.state, force)

    # ---- fit --------------------------------------------------------------------------------------
    def fit(self, train_loader, valid_loader, epochs: int, on_checkpoint=None) -> TrainState:
        """The epoch loop: train until early stopping or ``epochs``; ``on_checkpoint(trainer)`` runs after
        each evaluation. Ends with the best weights this run wrote (never a file left by another run)."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise CTRBenchError(f"epochs={epochs!r}: a run trains at least one whole epoch (an integer >= 1)")
        os.makedirs(os.path.dirname(self.model.checkpoint), exist_ok=True)
        n_batches = len(train_loader)
        eval_steps = self.params.get("eval_steps") or n_batches
        if eval_steps > epochs * n_batches:
            raise CTRBenchError(
                f"eval_steps={eval_steps}: the run has only {epochs * n_batches} steps ({epochs} epoch(s) "
                f"of {n_batches} batches), so it would never validate; set eval_steps <= "
                f"{epochs * n_batches} or leave it unset (once per epoch)"
            )
        state = self.state
        self.resume.restart_clock()
        self.step_log = StepLog(self.log_steps, state.train_samples)
        self.progress_file.start(state, epochs, n_batches)
        self.write_progress("train", force=True)
        while state.epoch < epochs and not state.stop:
            self.train_epoch(train_loader, valid_loader, n_batches, eval_steps, on_checkpoint)
            self._end_epoch(valid_loader, eval_steps, on_checkpoint)
        self.dist.barrier()
        if state.best_metric is not None:  # saved by this run (or the run it resumed, same config hash)
            load_weights(self.model, self.model.checkpoint)
        self.write_progress("eval", force=True)
        return state

    def train_epoch(self, loader, valid_loader, n_batches: int, eval_steps: int, on_checkpoint=None) -> None:
        """The rest of the current epoch's batches, pausing for a validation every ``eval_steps`` steps
        and for the resume state when it is due; stops early when a validation says so."""
        state = self.state
        loader.set_epoch(state.epoch)
        self.model.train()
        self.meter.start()
        with EpochBar(self.console, self.show_progress, state.epoch + 1, n_batches, state.batch) as bar:
            for batch, weight, rows in device_batches(self, loader, state.batch):
                loss = self.meter.take(batch, weight, rows)
                if self.callbacks:
                    logs = self.step_log(loss, state, self.lr)
                    if logs is not None:
                        self._notify("on_step", state.total_steps, logs)
                bar.update(state.batch, self.meter.mean_loss, self.meter.samples_per_second)
                evaluate = state.total_steps % eval_steps == 0 and state.batch < n_batches
                if evaluate or self.resume.due(state.total_steps, self.device):
                    self._pause(valid_loader, evaluate, on_checkpoint)
                    if state.stop:
                        break
                else:
                    self.write_progress("train")
        self.meter.book()

    def _pause(self, valid_loader, evaluate: bool, on_checkpoint) -> None:
        """A pause inside an epoch: the clock stops, a validation (when due) and the resume state."""
        self.meter.book()
        if evaluate:
            self.validate(valid_loader)
            if on_checkpoint:
                on_checkpoint(self)
        self.save_state()
        self.meter.start()

    def _end_epoch(self, valid_loader, eval_steps: int, on_checkpoint) -> None:
        """The epoch's line, with a validation when the epoch's last step is one of every ``eval_steps``
        (as in fuxictr: with ``eval_steps`` set, no extra validation at the epoch's end), then the resume
        state at the start of the next epoch. Nothing of it after a validation stopped the run."""
        state = self.state
        if not state.stop:
            due = state.total_steps % eval_steps == 0
            logs = self.validate(valid_loader) if due else {}
            self._epoch_line(state.epoch_loss / max(state.epoch_batches, 1), logs)
        state.epoch += 1
        state.batch = 0
        state.epoch_loss, state.epoch_batches = 0.0, 0
        if on_checkpoint:
            on_checkpoint(self)
        self.save_state()

    def _epoch_line(self, loss: float, logs: dict) -> None:
        line = epoch_line(self.state.epoch + 1, loss, logs, self.lr(), self.state.stopping_steps == 0)
        log.info(line)
        if self.params.get("verbose", 1) and self.dist.is_main:
            self.console.print(line, highlight=False)
        self.write_progress("train", force=True)

    def train(self, loaders: dict, epochs: int) -> TrainResult:
        """``fit`` on ``loaders['train']``/``['valid']``, then every metric of the best weights on valid and
        (when there is one) test, timed: the result the run record is made of."""
        started = time.time()
        state = self.fit(loaders["train"], loaders["valid"], epochs)
        seconds = time.time() - started
        valid = self.evaluate(loaders["valid"])
        test = self.evaluate(loaders["test"]) if "test" in loaders else None
        return TrainResult.build(self, state, valid, test, seconds)
