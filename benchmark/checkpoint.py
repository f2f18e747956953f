"""Files a training run writes and reads back: weights files and the resume state.

- **Weights.** ``save_torch`` writes atomically; ``read_weights``/``load_weights`` read a ``state_dict``
  with ``torch.load(weights_only=True)`` (a file from elsewhere stays data, never code) and turn anything
  that is not one into a one-line error naming the file.
- **Resume state.** :class:`ResumeState` writes everything needed to continue bit-identically: the model,
  every optimiser a step steps (``model.optimizers()``: their learning rates carry the plateau decays), the
  GradScaler, the trainer's counters (``TrainState`` as a dict) and the RNG states of python, numpy, torch
  and CUDA (one set per rank), all as tensors and plain values, so the file loads with
  ``torch.load(weights_only=True)``. It is read only from the run's own file and only when its config hash
  and number of processes are this run's (:func:`read_state`). When it is written (``due``): every
  ``checkpoint_steps`` batches and every ``checkpoint_seconds`` of training (default 300, 0 = off), besides
  the trainer's own saves after every evaluation and epoch.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import pickle
import random
import shutil
import time

import numpy as np
import torch

from .distributed import DistContext
from .errors import CTRBenchError
from .util import atomic_write

STATE_FORMAT = 2  # 2: RNG states as tensors, loadable with weights_only=True


class _Sink:
    """The binary file ``torch.save`` writes through, keeping the ``OSError`` of a failed write: torch
    reports it only as "unexpected pos", so a full disk could not be told from a damaged file."""

    def __init__(self, fd, path: str):
        self.fd, self.path, self.error = fd, path, None

    def write(self, data) -> int:
        try:
            return self.fd.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.fd.flush()


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def save_torch(obj, path: str) -> None:
    """``torch.save`` atomically (a temporary file renamed into place, removed when writing fails). A full
    disk is one error line naming the file and the free space; the file already at ``path`` is unchanged."""
    sinks: list[_Sink] = []

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fd:
            sinks.append(_Sink(fd, tmp))
            torch.save(obj, sinks[-1])

    try:
        atomic_write(path, write)
    except (OSError, RuntimeError) as exc:
        error = (sinks[-1].error if sinks else None) or (exc if isinstance(exc, OSError) else None)
        if error is None or error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        folder = os.path.dirname(os.path.abspath(path))
        raise CTRBenchError(
            f"no space left to write {path} ({_size(shutil.disk_usage(folder).free)} free in {folder}); "
            f"free some space or set model_root to another disk (--set model_root=DIR); the partial file "
            f"was removed{' and the earlier one is unchanged' if os.path.exists(path) else ''}"
        )


def read_weights(path: str) -> dict:
    """A weights file (a ``state_dict``) read with ``weights_only=True``: a file from elsewhere stays data,
    never code. Anything else is a one-line error naming the file."""
    if not os.path.isfile(path):
        raise CTRBenchError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
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
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:  # cut short, foreign
        raise CTRBenchError(
            f"cannot read the resume state {path} ({exc.__class__.__name__}; damaged, cut short or "
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


def rng_state() -> dict:
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


def set_rng_state(rng: dict) -> None:
    version, mt, gauss = rng["python"]
    random.setstate((version, tuple(mt.tolist()), gauss))
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _optimizer_states(payload: dict) -> list:
    """The saved optimisers' states in the order of ``model.optimizers()`` (files of older ctrbench
    versions kept the main optimiser and the auxiliary ones apart)."""
    if "optimizers" in payload:
        return list(payload["optimizers"])
    return [payload["optimizer"], *(payload.get("aux_optimizers") or [])]


class ResumeState:
    """The resume state file of one run: when it is due, writing it, restoring from it, removing it."""

    def __init__(
        self,
        path: str | None,
        config_hash: str | None = None,
        dist: DistContext | None = None,
        checkpoint_steps: int = 0,
        checkpoint_seconds: float = 300.0,
        config: dict | None = None,
    ):
        self.path, self.config_hash = path, config_hash
        self.config = config_json(config) if config is not None else None
        self.dist = dist or DistContext()
        self.checkpoint_steps, self.checkpoint_seconds = checkpoint_steps, checkpoint_seconds
        self.last_save = time.perf_counter()
        self.saved_step: int | None = None  # the training step of the last state this run saved

    @classmethod
    def from_params(cls, path, params: dict, config_hash=None, dist=None) -> "ResumeState":
        return cls(
            path if params.get("resume_state", True) else None,
            config_hash,
            dist,
            int(params.get("checkpoint_steps") or 0),
            float(params.get("checkpoint_seconds", 300) or 0),
            params,
        )

    def restart_clock(self) -> None:
        self.last_save = time.perf_counter()

    def due(self, total_steps: int, device) -> bool:
        """Whether the state should be written after step ``total_steps`` (the same answer on every rank)."""
        if not self.path:
            return False
        if self.checkpoint_steps and total_steps % self.checkpoint_steps == 0:
            return True
        if not self.checkpoint_seconds or (self.dist.enabled and total_steps % 20):
            return False  # under DDP the clock is consulted every 20 steps, in step on all ranks
        due = time.perf_counter() - self.last_save >= self.checkpoint_seconds
        return self.dist.any(due, device)  # every rank saves at the same step

    def save(self, model, optimizers, scaler, trainer: dict) -> bool:
        """Write the full training state (atomic; rank 0 writes, every rank's RNG is kept). Returns
        whether this process wrote the file."""
        if not self.path:
            return False
        rngs = self.dist.all_gather(rng_state())
        self.restart_clock()
        if not self.dist.is_main:
            return False
        payload = {
            "format": STATE_FORMAT,
            "config_hash": self.config_hash,
            "trainer": trainer,
            "model": model.state_dict(),
            "optimizers": [opt.state_dict() for opt in optimizers],
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rngs,
            "best_checkpoint": model.checkpoint,
            "world_size": self.dist.world_size,
            "config": self.config,  # JSON text: which settings a state found later belongs to
        }
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        save_torch(payload, self.path)
        self.saved_step = int(trainer.get("total_steps", 0))
        return True

    def read(self) -> dict:
        return read_state(self.path, self.config_hash, self.dist.world_size)

    def restore(self, payload: dict, model, optimizers, scaler) -> dict:
        """Load weights, optimisers, scaler and this rank's RNG from ``payload`` (the file as
        :func:`read_state` returned it); returns the trainer's saved counters."""
        states = _optimizer_states(payload)
        optimizers = list(optimizers)
        if len(states) != len(optimizers):
            raise CTRBenchError(
                f"{self.path} holds the state of {len(states)} optimiser(s), the model steps "
                f"{len(optimizers)}; delete it and run without --resume"
            )
        model.load_state_dict(payload["model"])
        for opt, sd in zip(optimizers, states):
            opt.load_state_dict(sd)
        if scaler is not None and payload.get("scaler"):
            scaler.load_state_dict(payload["scaler"])
        self.saved_step = int(payload["trainer"].get("total_steps", 0))
        rngs = payload["rng"]
        set_rng_state(rngs[self.dist.rank] if self.dist.rank < len(rngs) else rngs[0])
        return dict(payload["trainer"])

    def remove(self) -> None:
        if self.path and self.dist.is_main and os.path.isfile(self.path):
            os.remove(self.path)


def config_json(params: dict) -> str:
    """A config as the JSON text a resume state keeps (private ``_`` keys left out, as in the record)."""
    return json.dumps({k: v for k, v in params.items() if not k.startswith("_")}, sort_keys=True, default=str)


def describe_state(path: str) -> str:
    """Where a saved state stands, for a message: ``epoch 2, batch 5 (step 12), saved 2026-12-06 07:40``."""
    saved = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(path)))
    try:
        trainer = torch.load(path, map_location="cpu", weights_only=True)["trainer"]
        return (
            f"epoch {trainer['epoch'] + 1}, batch {trainer['batch']} (step {trainer['total_steps']}), "
            f"saved {saved}"
        )
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, KeyError, TypeError) as exc:
        return f"saved {saved}, unreadable ({exc.__class__.__name__})"


def config_changes(path: str, params: dict, limit: int = 6) -> str:
    """The settings in which the config saved in the state ``path`` differs from ``params``:
    ``learning_rate=0.001 (now 0.01), ...``; empty when the file does not say."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True).get("config")
        old = json.loads(saved) if isinstance(saved, str) else None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError):
        old = None
    if not isinstance(old, dict):
        return ""
    new = json.loads(config_json(params))
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    text = [f"{k}={json.dumps(old.get(k))} (now {json.dumps(new.get(k))})" for k in keys[:limit]]
    return ", ".join(text) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def states_of_other_configs(directory: str, prefix: str, own: str) -> list[str]:
    """The resume states in ``directory`` whose run id starts with ``prefix`` (``<expid>_s<seed>_``),
    other than ``own``; newest first."""
    found = [p for p in glob.glob(os.path.join(glob.escape(directory), glob.escape(prefix) + "*.resume.pt"))]
    found = [p for p in found if os.path.abspath(p) != os.path.abspath(own)]
    return sorted(found, key=os.path.getmtime, reverse=True)
