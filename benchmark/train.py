"""The one training loop for every model.

Semantics follow fuxictr's ``BaseModel.fit`` (what the papers' numbers were produced with):
evaluate on the validation split every ``eval_steps`` batches (once per epoch by default); on an
improvement of the ``monitor`` by more than 1e-6 save the best checkpoint, otherwise count a
non-improvement and, with ``reduce_lr_on_plateau``, multiply the learning rate by 0.1 (floor 1e-6);
stop after ``early_stop_patience`` consecutive non-improvements; reload the best checkpoint at the end.
Gradient norms are clipped to ``max_gradient_norm``.

On top of that:

- **Resume.** ``save_state`` writes everything needed to continue bit-identically: model, main and
  auxiliary optimisers (their learning rates carry the plateau decays), the GradScaler, the
  ``TrainState`` (epoch, position in the epoch, early-stopping counters, best metric, history) and
  the RNG states of python, numpy, torch and CUDA (one set per rank), all as tensors and plain
  values, so the file loads with ``torch.load(weights_only=True)`` (no pickled code). It is read
  only from the trainer's own ``state_file`` and only when its config hash is this run's. It is
  written atomically after every evaluation and epoch, every ``checkpoint_steps`` batches and every
  ``checkpoint_seconds`` (default 300, 0 = off); ``resume_state: false`` turns it off. The loader's per-epoch seeded
  permutation plus ``iter_from(batch)`` replays the rest of the interrupted epoch. Models that keep
  state outside parameters and buffers expose it through ``nn.Module.get_extra_state``.
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
- Progress: a rich bar per epoch (batch, loss, samples/s, ETA) and, for sweeps, a small JSON file
  (``progress_file``) with epoch, position, last validation metrics and ETA, rewritten atomically.
- Models' auxiliary optimisers and ``on_train_step_end`` hooks, full metrics on valid/test after
  training (fuxictr only evaluates monitored metrics during training), the time spent waiting for
  the loader, and the test-set prediction time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import random
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from fuxictr.utils import Monitor
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .distributed import DistContext
from .errors import CTRBenchError
from .metrics import evaluate_metrics
from .util import atomic_write, atomic_write_json, sync

log = logging.getLogger("ctrbench.train")

STATE_FORMAT = 2  # 2: RNG states as tensors, loadable with weights_only=True


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


def save_torch(obj, path: str) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def read_weights(path: str) -> dict:
    """A weights file (a ``state_dict``) read with ``weights_only=True``: a file from elsewhere stays data,
    never code. Anything else is a one-line error naming the file."""
    if not os.path.isfile(path):
        raise CTRBenchError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise CTRBenchError(
            f"{path} is not a weights file torch can load safely ({exc.__class__.__name__}: "
            f"{first}); give the .model checkpoint a ctrbench run wrote"
        )
    if not isinstance(state, dict):
        raise CTRBenchError(f"{path} holds a {type(state).__name__}, not a state dict of model weights")
    return state


def load_weights(model, path: str, state: dict | None = None) -> None:
    """Load the weights file ``path`` (or its ``state`` already read by :func:`read_weights`) into
    ``model``; weights that do not fit the model are a one-line error."""
    state = read_weights(path) if state is None else state
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CTRBenchError(
            f"{path} does not fit {type(model).__name__} on this feature map "
            f"({str(exc).splitlines()[0][:200]}); was it trained with another config?"
        )
    model.to(model.device)


def read_state(path: str | None, config_hash: str | None, world_size: int = 1) -> dict:
    """A run's resume state file, read with ``weights_only=True`` and checked: ctrbench's format, saved
    by the same config (hash) with the same number of processes. Anything else is a one-line error."""
    if not path or not os.path.isfile(path):
        raise CTRBenchError(f"no resume state at {path}; run without --resume")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:  # truncated, foreign, old
        raise CTRBenchError(
            f"cannot read the resume state {path} ({exc.__class__.__name__}; damaged or "
            f"written by an older ctrbench); delete it and run without --resume"
        )
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise CTRBenchError(f"{path} is not a ctrbench resume state; delete it and run without --resume")
    if config_hash and payload.get("config_hash") != config_hash:
        raise CTRBenchError(
            f"{path} was saved by another config (hash {payload.get('config_hash')}, "
            f"this run {config_hash}); delete it or run without --resume"
        )
    if payload.get("world_size", 1) != world_size:
        raise CTRBenchError(
            f"{path} was saved with {payload.get('world_size', 1)} process(es), this run "
            f"has {world_size}; resume with the same number of processes"
        )
    return payload


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
        self.monitor = Monitor(kv=params.get("monitor", "AUC"))
        self.mode = params.get("monitor_mode", "max")
        self.patience = int(params.get("early_stop_patience", 2))
        self.max_norm = float(params.get("max_gradient_norm", 10.0) or 0.0)
        self.reduce_lr = bool(params.get("reduce_lr_on_plateau", True))
        self.state = TrainState()
        self.show_progress = bool(params.get("verbose", 1)) and self.console.is_terminal and self.dist.is_main
        self.device = torch.device(getattr(model, "device", "cpu"))
        self.amp = amp_dtype(params.get("amp"))
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp == torch.float16 else None
        self.state_file = state_file if params.get("resume_state", True) else None
        self.progress_file = progress_file
        self.config_hash = config_hash
        self.checkpoint_steps = int(params.get("checkpoint_steps") or 0)
        self.checkpoint_seconds = float(params.get("checkpoint_seconds", 300) or 0)
        self.last_predict_seconds = 0.0
        self.last_predict_rows = 0
        self._last_progress = 0.0
        self._last_state_save = time.perf_counter()
        self._fit_started = None
        self._fit_steps0 = 0
        self._total_epochs = self._epoch_batches = 0
        self.fused_optimizer = self._use_fused_optimizers(params.get("fused_optimizer", False))
        self.train_module = model
        self.eval_module = model
        if self.dist.enabled:
            self.train_module = self.dist.wrap(model, bool(params.get("ddp_find_unused_parameters", True)))
        compile_opt = params.get("compile")
        if compile_opt:
            backend = (
                "inductor" if compile_opt is True or str(compile_opt).lower() == "true" else str(compile_opt)
            )
            self.train_module = torch.compile(self.train_module, backend=backend)
            self.eval_module = (
                torch.compile(model, backend=backend) if self.dist.enabled else self.train_module
            )

    def _use_fused_optimizers(self, wanted) -> bool:
        """``fused_optimizer: true``: Adam/AdamW take torch's fused kernel (one pass over each
        parameter instead of several; the same update up to float rounding)."""
        if not wanted or str(wanted).lower() in ("false", "no", "off", "0"):
            return False
        fused = False
        for opt in self.optimizers():
            if type(opt) not in (torch.optim.Adam, torch.optim.AdamW):
                continue
            params = [p for g in opt.param_groups for p in g["params"]]
            if params and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params):
                for group in opt.param_groups:
                    group["fused"], group["foreach"] = True, False
                fused = True
        return fused

    # ---- steps --------------------------------------------------------------------------------
    def optimizers(self):
        """Every optimiser a step steps: the model's own list (the zoo's ``CTRModel.optimizers``), else
        fuxictr's one optimiser."""
        if hasattr(self.model, "optimizers"):
            return list(self.model.optimizers())
        return [self.model.optimizer] + list(getattr(self.model, "aux_optimizers", []))

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp)

    def _fp32(self, return_dict: dict) -> dict:
        """Under autocast: outputs back to fp32, and y_pred recomputed from the fp32 logit."""
        if self.amp is None:
            return return_dict
        out = {
            k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in return_dict.items()
        }
        if "logit" in out and "y_pred" in out and hasattr(self.model, "output_activation"):
            out["y_pred"] = self.model.output_activation(out["logit"])
        return out

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
        return_dict = self._fp32(return_dict)
        y_true = model.get_labels(batch)
        loss = model.compute_loss(return_dict, y_true)
        objective = loss * weight if weight != 1.0 else loss
        if self.scaler is not None:
            self.scaler.scale(objective).backward()
            for opt in self.optimizers():
                self.scaler.unscale_(opt)
        else:
            objective.backward()
        if self.max_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.max_norm)
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
                return_dict = self._fp32(return_dict)
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
            if self.dist.is_main:
                save_torch(self.model.state_dict(), self.model.checkpoint)
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
        self.dist.barrier()

    def validate(self, valid_loader) -> dict:
        metrics = self.monitor.get_metrics()
        wanted = (
            list(dict.fromkeys([*metrics, *self.params.get("metrics", [])])) if self.callbacks else metrics
        )
        every = self.evaluate(valid_loader, wanted)
        logs = {k: every[k] for k in metrics}  # history and early stopping see the monitored ones
        lr = self.model.optimizer.param_groups[0]["lr"]
        self.state.history.append(
            {"epoch": self.state.epoch + 1, "step": self.state.total_steps, **logs, "lr": lr}
        )
        self.checkpoint_and_earlystop(logs)
        self._notify(
            "on_eval",
            self.state.epoch + 1,
            {
                "epoch": self.state.epoch + 1,
                "step": self.state.total_steps,
                "evaluation": len(self.state.history),
                **every,
                "lr": lr,
            },
        )
        self.model.train()
        return logs

    def _notify(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            fn = getattr(callback, hook, None)
            if fn is not None:
                fn(*args)

    def _log_step(self, loss) -> None:
        """Accumulate the loss; every ``log_steps`` steps hand its mean to the callbacks' on_step."""
        self._cb_loss = loss if self._cb_loss is None else self._cb_loss + loss
        self._cb_n += 1
        if self.state.total_steps % self.log_steps:
            return
        now = time.perf_counter()
        rate = (
            (self.state.train_samples - self._cb_samples) / max(now - self._cb_time, 1e-9)
            if self._cb_time is not None
            else None
        )
        logs = {
            "loss": float(self._cb_loss) / self._cb_n,
            "lr": self.model.optimizer.param_groups[0]["lr"],
            "samples_per_second": rate,
            "epoch": self.state.epoch + 1,
        }
        self._cb_loss, self._cb_n, self._cb_time, self._cb_samples = None, 0, now, self.state.train_samples
        self._notify("on_step", self.state.total_steps, logs)

    # ---- resume ---------------------------------------------------------------------------------
    def _rng_state(self) -> dict:
        """The RNG states as tensors and plain values (what ``weights_only=True`` loads)."""
        version, mt, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        rng = {
            "python": [version, torch.tensor(mt, dtype=torch.int64), gauss],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return rng

    @staticmethod
    def _set_rng_state(rng: dict) -> None:
        version, mt, gauss = rng["python"]
        random.setstate((version, tuple(mt.tolist()), gauss))
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def save_state(self, path: str | None = None) -> None:
        """Write the full training state (atomic; rank 0 writes, every rank's RNG is kept)."""
        path = path or self.state_file
        if not path:
            return
        rngs = self.dist.all_gather(self._rng_state())
        self._last_state_save = time.perf_counter()
        if not self.dist.is_main:
            return
        payload = {
            "format": STATE_FORMAT,
            "config_hash": self.config_hash,
            "trainer": asdict(self.state),
            "model": self.model.state_dict(),
            "optimizer": self.model.optimizer.state_dict(),
            "aux_optimizers": [opt.state_dict() for opt in getattr(self.model, "aux_optimizers", [])],
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rngs,
            "best_checkpoint": self.model.checkpoint,
            "world_size": self.dist.world_size,
        }
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        save_torch(payload, path)
        self.write_progress("train", force=True)

    def load_state(self, payload: dict | None = None) -> TrainState:
        """Continue from ``save_state``'s file, the trainer's own ``state_file`` (never a path from
        elsewhere): weights, optimisers, counters, position and RNG, when its config hash is this run's.
        ``payload``: that file as :func:`read_state` returned it (the runner checks it before any work)."""
        path = self.state_file
        if payload is None:
            payload = read_state(path, self.config_hash, self.dist.world_size)
        known = {f.name for f in fields(TrainState)}
        state = TrainState(**{k: v for k, v in payload["trainer"].items() if k in known})
        if state.best_metric is not None and not os.path.isfile(self.model.checkpoint):
            raise CTRBenchError(
                f"the best checkpoint {self.model.checkpoint} of the resumed run is missing; "
                f"delete {path} and run without --resume"
            )
        self.model.load_state_dict(payload["model"])
        self.model.optimizer.load_state_dict(payload["optimizer"])
        for opt, sd in zip(getattr(self.model, "aux_optimizers", []), payload.get("aux_optimizers") or []):
            opt.load_state_dict(sd)
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        rngs = payload["rng"]
        self._set_rng_state(rngs[self.dist.rank] if self.dist.rank < len(rngs) else rngs[0])
        state.resumed += 1
        self.state = state
        log.info(
            "Resumed from %s at epoch %d, batch %d (step %d)",
            path,
            state.epoch + 1,
            state.batch,
            state.total_steps,
        )
        return state

    def remove_state(self) -> None:
        if self.state_file and self.dist.is_main and os.path.isfile(self.state_file):
            os.remove(self.state_file)

    # ---- progress -----------------------------------------------------------------------------------
    def write_progress(
        self, status: str, force: bool = False, epochs: int | None = None, batches: int | None = None
    ) -> None:
        """Rewrite ``progress_file`` (at most once a second unless forced)."""
        if not self.progress_file or not self.dist.is_main:
            return
        now = time.perf_counter()
        if not force and now - self._last_progress < 1.0:
            return
        self._last_progress = now
        if epochs is not None:
            self._total_epochs = epochs
        if batches is not None:
            self._epoch_batches = batches
        st = self.state
        epochs, batches = self._total_epochs, self._epoch_batches
        last = st.history[-1] if st.history else {}
        elapsed = now - self._fit_started if self._fit_started else 0.0
        done = st.epoch * batches + st.batch
        total = max(epochs * batches, 1)
        steps = st.total_steps - self._fit_steps0
        eta = elapsed / steps * max(total - done, 0) if steps > 0 and status != "done" else 0.0
        payload = {
            "pid": os.getpid(),
            "status": status,
            "epoch": st.epoch + (0 if status == "done" else 1),
            "epochs": epochs,
            "batch": st.batch,
            "batches": batches,
            "steps": st.total_steps,
            "fraction": min(done / total, 1.0),
            "samples_per_second": st.train_samples / max(st.train_seconds, 1e-9),
            "valid": {k: v for k, v in last.items() if k not in ("epoch", "step", "lr")},
            "best": st.best_metric,
            "best_epoch": st.best_epoch,
            "elapsed": elapsed,
            "eta": eta,
            "resumed": st.resumed,
            "time": time.time(),
        }
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.progress_file)), exist_ok=True)
            atomic_write_json(self.progress_file, payload)
        except OSError:
            pass

    # ---- fit --------------------------------------------------------------------------------------
    def _batches(self, loader, skip: int):
        """Batches from ``skip`` on: sharded for this rank, moved to the device one batch ahead,
        with the time spent waiting for the loader accounted."""
        it = self.dist.train_batches(loader.iter_from(skip))
        pending = None
        while True:
            t0 = time.perf_counter()
            try:
                batch, weight, rows = next(it)
            except StopIteration:
                break
            self.state.loader_seconds += time.perf_counter() - t0
            item = (self._to_device(batch), weight, rows)
            if pending is not None:
                yield pending
            pending = item
        if pending is not None:
            yield pending

    def _checkpoint_due(self) -> bool:
        if not self.state_file:
            return False
        if self.checkpoint_steps and self.state.total_steps % self.checkpoint_steps == 0:
            return True
        if not self.checkpoint_seconds or (self.dist.enabled and self.state.total_steps % 20):
            return False  # under DDP the clock is consulted every 20 steps, in step on all ranks
        due = time.perf_counter() - self._last_state_save >= self.checkpoint_seconds
        return self.dist.any(due, self.device)  # every rank saves at the same step

    def fit(self, train_loader, valid_loader, epochs: int, on_checkpoint=None) -> TrainState:
        """Train until early stopping or ``epochs``; ``on_checkpoint(trainer)`` runs after each eval.
        Ends with the best weights this run wrote (never a file left by another run)."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise CTRBenchError(f"epochs={epochs!r}: a run trains at least one whole epoch (an integer >= 1)")
        os.makedirs(os.path.dirname(self.model.checkpoint), exist_ok=True)
        n_batches = len(train_loader)
        eval_steps = self.params.get("eval_steps") or n_batches
        state = self.state
        self._fit_started, self._fit_steps0 = time.perf_counter(), state.total_steps
        self._last_state_save = time.perf_counter()
        self._cb_loss, self._cb_n, self._cb_time, self._cb_samples = (
            None,
            0,
            time.perf_counter(),
            state.train_samples,
        )
        self.write_progress("train", force=True, epochs=epochs, batches=n_batches)
        while state.epoch < epochs and not state.stop:
            train_loader.set_epoch(state.epoch)
            self.model.train()
            started = time.perf_counter()
            loss_sum, loss_n, ui_updated = None, 0, 0.0
            with self._progress(n_batches) as progress:
                task = progress.add_task(
                    f"epoch {state.epoch + 1}",
                    total=n_batches,
                    completed=state.batch,
                    loss=float("nan"),
                    rate=0.0,
                )
                for batch, weight, rows in self._batches(train_loader, state.batch):
                    loss = self.train_step(batch, weight)
                    loss_sum = loss if loss_sum is None else loss_sum + loss
                    loss_n += 1
                    state.batch += 1
                    state.total_steps += 1
                    state.train_samples += rows
                    if self.callbacks:
                        self._log_step(loss)
                    if self.show_progress and (
                        time.perf_counter() - ui_updated >= 0.2 or state.batch == n_batches
                    ):
                        ui_updated = time.perf_counter()
                        progress.update(
                            task,
                            completed=state.batch,
                            loss=(state.epoch_loss + float(loss_sum)) / (state.epoch_batches + loss_n),
                            rate=state.train_samples / max(state.train_seconds + ui_updated - started, 1e-9),
                        )
                    eval_now = state.total_steps % eval_steps == 0 and state.batch < n_batches
                    if eval_now or self._checkpoint_due():
                        state.epoch_loss += float(loss_sum)
                        state.epoch_batches += loss_n
                        loss_sum, loss_n = None, 0
                        sync(self.device)
                        state.train_seconds += time.perf_counter() - started
                        if eval_now:
                            self.validate(valid_loader)
                            if on_checkpoint:
                                on_checkpoint(self)
                        self.save_state()
                        started = time.perf_counter()
                        if state.stop:
                            break
                    else:
                        self.write_progress("train")
            if loss_sum is not None:
                state.epoch_loss += float(loss_sum)
                state.epoch_batches += loss_n
            sync(self.device)
            state.train_seconds += time.perf_counter() - started
            if not state.stop:
                logs = self.validate(valid_loader)
                self._epoch_line(state.epoch_loss / max(state.epoch_batches, 1), logs)
            state.epoch += 1
            state.batch = 0
            state.epoch_loss, state.epoch_batches = 0.0, 0
            if on_checkpoint:
                on_checkpoint(self)
            self.save_state()
        self.dist.barrier()
        if state.best_metric is not None:  # saved by this run (or the run it resumed, same config hash)
            load_weights(self.model, self.model.checkpoint)
        self.write_progress("eval", force=True)
        return state

    def train(self, loaders: dict, epochs: int) -> TrainResult:
        """``fit`` on ``loaders['train']``/``['valid']``, then every metric of the best weights on valid and
        (when there is one) test, timed: the result the run record is made of."""
        started = time.time()
        state = self.fit(loaders["train"], loaders["valid"], epochs)
        train_seconds = time.time() - started
        valid = self.evaluate(loaders["valid"])
        test, infer = None, None
        if "test" in loaders:
            test = self.evaluate(loaders["test"])
            if self.last_predict_rows:
                infer = round(self.last_predict_seconds * 1000.0 / self.last_predict_rows * 100.0, 4)
        busy = max(state.train_seconds, 1e-9)
        return TrainResult(
            valid=valid,
            test=test,
            best_epoch=state.best_epoch,
            epochs_run=state.epoch,
            history=state.history,
            train_seconds=round(train_seconds, 3),
            seconds_per_epoch=round(state.train_seconds / max(1, state.epoch), 3),
            samples_per_second=round(state.train_samples / busy, 1),
            loader_wait_pct=round(100.0 * state.loader_seconds / busy, 3),
            infer_ms_per_100=infer,
            fused_optimizer=self.fused_optimizer,
            world_size=self.dist.world_size,
            resumed=state.resumed,
        )

    def _epoch_line(self, loss: float, logs: dict) -> None:
        metrics = " ".join(f"{k}={v:.6f}" for k, v in logs.items())
        lr = self.model.optimizer.param_groups[0]["lr"]
        line = (
            f"epoch {self.state.epoch + 1}: train loss {loss:.6f}  valid {metrics}  lr {lr:.2e}"
            f"{'  (best)' if self.state.stopping_steps == 0 else ''}"
        )
        log.info(line)
        if self.params.get("verbose", 1) and self.dist.is_main:
            self.console.print(line, highlight=False)
        self.write_progress("train", force=True)

    def _progress(self, total: int) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[rate]:,.0f} samples/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not self.show_progress,
        )
