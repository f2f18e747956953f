"""The Optuna study: storage, sampler, pruner, the tune settings, and trials left by dead workers."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass

from ..errors import CTRBenchError
from ..tracking import require
from ..util import process_alive
from .space import Space

log = logging.getLogger("ctrbench")

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "asha", "none")
HOST = socket.gethostname()


def monitor_value(params: dict, metrics: dict) -> float:
    from fuxictr.utils import Monitor

    return float(Monitor(kv=params.get("monitor", "AUC")).get_value(metrics))


def direction(params: dict) -> str:
    mode = str(params.get("monitor_mode", "max")).lower()
    if mode not in ("max", "min"):
        raise CTRBenchError(f"monitor_mode={mode!r}: use max or min")
    return "maximize" if mode == "max" else "minimize"


def default_out_dir(results: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(results)), "tune")


def storage_url(storage: str | None, out_dir: str, study: str) -> str:
    if storage:
        return storage
    os.makedirs(out_dir, exist_ok=True)
    return f"sqlite:///{os.path.join(os.path.abspath(out_dir), study)}.db"


def make_storage(url: str, heartbeat: int = 30, grace: int = 90):
    """Optuna RDB storage with heartbeats (a trial whose process stops beating is failed and retried)."""
    optuna = require("optuna", "ctrbench tune")
    kwargs = {"engine_kwargs": {"connect_args": {"timeout": 120}}} if url.startswith("sqlite") else {}
    quiet = warnings.catch_warnings()
    with quiet:  # heartbeats are "experimental" in Optuna's terms
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        if retry_cls is not None:
            kwargs["heartbeat_stale_trial_callback"] = retry_cls(max_retry=2)
        else:  # Optuna < 4.9
            kwargs["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=2)
    if url.startswith("sqlite:///"):
        folder = os.path.dirname(os.path.abspath(url[len("sqlite:///") :]))
        if not os.path.isdir(folder):
            raise CTRBenchError(
                f"--storage {url}: the folder {folder} does not exist; create it (mkdir -p {folder}) or "
                f"give a path in an existing folder"
            )
    for attempt in range(3):  # two processes creating the tables of a new database at once
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, heartbeat_interval=heartbeat, grace_period=grace, **kwargs
                )
        except Exception as exc:
            import sqlalchemy.exc

            if not isinstance(exc, sqlalchemy.exc.OperationalError) or attempt == 2:
                if isinstance(
                    exc, (sqlalchemy.exc.ArgumentError, ImportError, sqlalchemy.exc.NoSuchModuleError)
                ):
                    raise CTRBenchError(
                        f"--storage {url}: {exc}; give an SQLAlchemy URL such as "
                        f"sqlite:///tune.db or postgresql://user@host/db"
                    )
                if isinstance(exc, sqlalchemy.exc.OperationalError):
                    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                    raise CTRBenchError(
                        f"--storage {url}: cannot open the study database ({reason}); check that the "
                        f"path or server exists and can be written"
                    )
                raise
            time.sleep(1.0 + attempt)


def make_sampler(name: str, space: Space, total: int, seed: int):
    optuna = require("optuna", "ctrbench tune")
    if name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(1, total // 2)))
    raise CTRBenchError(f"--sampler {name}: use one of {', '.join(SAMPLERS)}")


def make_pruner(name: str, total: int, startup: int | None = None, warmup: int = 0):
    optuna = require("optuna", "ctrbench tune")
    startup = min(5, max(1, total // 4)) if startup is None else startup
    if name == "median":
        # steps are 1-based evaluation counts: the first ``warmup`` evaluations are never pruned
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup + 1)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=warmup + 1, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise CTRBenchError(f"--pruner {name}: use one of {', '.join(PRUNERS)}")


@dataclass
class TuneConfig:
    """Everything a worker needs to run trials of one study (also sent to subprocesses and Ray tasks)."""

    space_file: str
    expid: str | None
    config_dir: str
    sets: list
    data_root: str | None
    results: str
    storage: str
    study: str
    trials: int
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 2023
    gpu: int = -1
    startup: int | None = None
    warmup: int = 0

    def argv(self) -> list[str]:
        args = [
            "--space",
            self.space_file,
            "--config",
            self.config_dir,
            "--results",
            self.results,
            "--storage",
            self.storage,
            "--study",
            self.study,
            "--trials",
            str(self.trials),
            "--sampler",
            self.sampler,
            "--pruner",
            self.pruner,
            "--sampler-seed",
            str(self.seed),
            "--gpu",
            str(self.gpu),
            "--warmup",
            str(self.warmup),
        ]
        if self.expid:
            args += ["--expid", self.expid]
        if self.data_root:
            args += ["--data-root", self.data_root]
        if self.startup is not None:
            args += ["--startup-trials", str(self.startup)]
        for s in self.sets:
            args += ["--set", s]
        return args


def open_study(cfg: TuneConfig, space: Space, create: bool = True):
    """Create or load the study; a study created with another space or direction is an error."""
    optuna = require("optuna", "ctrbench tune")
    # ctrbench says each failed trial in one line; Optuna's warning would print its traceback first
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    total = cfg.trials
    storage = make_storage(cfg.storage)
    want = direction(space.base)
    kwargs = dict(
        study_name=cfg.study,
        storage=storage,
        sampler=make_sampler(cfg.sampler, space, total, cfg.seed),
        pruner=make_pruner(cfg.pruner, total, cfg.startup, cfg.warmup),
    )
    if create:
        study = optuna.create_study(direction=want, load_if_exists=True, **kwargs)
    else:
        study = optuna.load_study(**kwargs)
    attrs = study.user_attrs
    fingerprint = space.fingerprint()
    if not attrs.get("space_fingerprint"):
        study.set_user_attr("space_fingerprint", fingerprint)
        study.set_user_attr("expid", space.expid)
        study.set_user_attr("space_file", os.path.abspath(space.source))
        study.set_user_attr("sets", list(space.sets))
    elif attrs["space_fingerprint"] != fingerprint:
        raise CTRBenchError(
            f"study '{cfg.study}' in {cfg.storage} was created for another space or --set "
            f"({attrs.get('space_file')}, expid {attrs.get('expid')}, sets {attrs.get('sets')}); "
            f"pass --study NEW for this space"
        )
    if study.direction.name.lower() != want:
        raise CTRBenchError(
            f"study '{cfg.study}' {study.direction.name.lower()}s, but monitor_mode of "
            f"{space.expid} asks to {want}; pass --study NEW"
        )
    return study


def counts(study) -> dict[str, int]:
    out = {"COMPLETE": 0, "PRUNED": 0, "RUNNING": 0, "WAITING": 0, "FAIL": 0}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def finished_points(study, grid: bool) -> int:
    """Finished (complete + pruned) trials; with the grid sampler, finished grid points (distinct values),
    so a point that ran twice is counted once and the study is not done while a point never ran."""
    optuna = require("optuna", "ctrbench tune")
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = study.get_trials(deepcopy=False, states=states)
    if not grid:
        return len(done)
    return len({json.dumps(sorted(t.params.items()), default=str) for t in done})


def crashed_points(study) -> int:
    """Grid points whose trial crashed (a run error, not an interruption) and never finished: they count
    as settled, or the sampler would repeat finished points until the total is met."""
    optuna = require("optuna", "ctrbench tune")
    key = lambda t: json.dumps(sorted(t.params.items()), default=str)  # noqa: E731
    finished = {
        key(t)
        for t in study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        )
    }
    failed = {
        key(t)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
        if "error" in t.user_attrs and t.params
    }
    return len(failed - finished)


def recover_dead_trials(study) -> list[int]:
    """Fail and re-enqueue trials left RUNNING by a process of this host that no longer exists."""
    optuna = require("optuna", "ctrbench tune")
    storage = study._storage
    retried = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid, host = t.user_attrs.get("pid"), t.user_attrs.get("host")
        if host != HOST or not isinstance(pid, int) or process_alive(pid):
            continue
        if storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL):
            t.user_attrs["interrupted"] = True
            retry_trial(study, t)
            retried.append(t.number)
            log.info("trial %d was left running by process %d, which is gone: enqueued again", t.number, pid)
    return retried


def retry_trial(study, trial) -> None:
    """Queue a failed trial again with its values and its system attributes: the grid sampler's
    ``grid_id`` stays with the values, so the retry is that grid point (without it the sampler gives the
    retry a new id, and that point is never run while another runs twice)."""
    optuna = require("optuna", "ctrbench tune")
    if (trial.params.keys() != trial.distributions.keys() or not trial.params) and (
        "grid_id" not in trial.system_attrs
    ):
        return  # it died before drawing its values: nothing to repeat
    system = {
        **trial.system_attrs,
        "failed_trial": trial.number,
        "retry_history": list(trial.system_attrs.get("retry_history", [])) + [trial.number],
    }
    attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("pid", "host", "interrupted")}
    study.add_trial(
        optuna.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=attrs,
            system_attrs=system,
        )
    )
