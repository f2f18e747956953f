"""Hyper-parameter search on Optuna: every trial an ordinary ctrbench run, the study in a database.

    ctrbench tune --expid DCN_frappe_partial --space space.yaml --trials 20 --sampler tpe --pruner median
    ctrbench tune --space config/tuner/DCN_tiny_tuner.yaml            # a FuxiCTR tuner file: its grid
    ctrbench tune ... --jobs 2 | --gpus 0,1 | --ray-address auto     # trials in parallel
    ctrbench tune ... --seeds 3                                      # then the tuned expid over 3 seeds

**Space.** A YAML mapping (optionally under ``tuner_space:``) from settings of the expid to a list of
choices (categorical, as in FuxiCTR's ``tuner_space``; ``[[400, 400], [200]]`` are two list-valued
choices), a range ``{low: 1.e-4, high: 1.e-2, log: true}`` (float; ``step`` allowed), an integer range
``{int: [1, 6]}`` (``log``/``step`` allowed) or a scalar (fixed for every trial). Every key must be a
setting of the expid, its Base or the defaults; dataset settings are tuned through a tuner file, which
gives each variant its own dataset id. A file with ``base_expid`` and ``tuner_space`` is a FuxiCTR tuner
file: it is expanded by ``sweep``'s expansion (the same generated expids, dataset variants and config
directory) and its choices become the categorical space (grid sampler by default).

**Trials.** Each trial resolves to a ``sweep.RunSpec`` and runs through ``runner.run_experiment`` with
``resume=True`` (run id ``<expid>_s<seed>_<config hash>``, as every run): it appends an ordinary record to
the records file. A trial whose config already has a record reuses it; one identical to a pruned trial is
pruned again without training; two processes that draw the same config take turns (a file lock per run), so
no config is trained twice. The intermediate values are the validation monitor (``monitor``, e.g. ``AUC`` or
``{AUC: 1, logloss: -1}``) at every evaluation, so the pruner (median or asynchronous successive halving)
stops weak trials at the evaluation where they fall behind; a pruned run writes no record and its files are
removed.

**Study.** Optuna RDB storage: ``<out>/<study>.db`` (SQLite, ``<out>`` = ``tune/`` next to the records
file) unless ``--storage`` names any SQLAlchemy URL (PostgreSQL/MySQL for several machines). The
study name defaults to ``<expid>-<md5 of space and --set>`` and the study remembers its space: reusing
a name with another space is an error. ``--trials N`` is the total of finished (complete + pruned)
trials over all invocations and processes: a rerun after an interruption runs only what is missing.
Trials left RUNNING by a killed process are failed and re-enqueued with their parameters (at once when
the process ran on this host and is gone, else by Optuna's heartbeat after ``grace_period``); the
re-enqueued run resumes from its saved training state.

**Results** (``<out>/<study>/``): ``config/`` with ``<expid>_tuned`` (the best trial's resolved config
as a self-contained expid + dataset section, for ``ctrbench run --config <out>/<study>/config``, sweeps
and reproduce targets), ``top_trials.md``, ``trials.csv``, ``summary.json`` and Optuna's plots
(``history.png``, ``importances.png``, ``intermediate.png``).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import logging
import math
import os
import socket
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field

import yaml
from rich.console import Console
from rich.table import Table

from . import config as config_mod
from . import sweep as sweep_mod
from .errors import CTRBenchError
from .records import read_records
from .tracking import require
from .util import process_alive

log = logging.getLogger("ctrbench")

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "asha", "none")
HOST = socket.gethostname()
_RANGE_KEYS = {"low", "high", "log", "step"}


# ---- search space -------------------------------------------------------------------------------


def _label(value):
    """A choice as an Optuna categorical value (lists and mappings travel as JSON text)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


@dataclass
class Param:
    """One searched setting: categorical choices, a float range or an int range."""

    name: str
    kind: str  # categorical | float | int
    choices: list = field(default_factory=list)
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def labels(self) -> list:
        return [_label(c) for c in self.choices]

    def decode(self, label):
        if self.kind != "categorical":
            return label
        for choice in self.choices:
            if _label(choice) == label:
                return copy.deepcopy(choice)
        raise CTRBenchError(
            f"value {label!r} of '{self.name}' in the study is not a choice of the space "
            f"file; the study was created with another space: pass --study NEW"
        )

    def suggest(self, trial):
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, self.labels)
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)


def parse_param(name: str, value, source: str) -> Param | None:
    """A space entry -> Param (None for a fixed scalar or a one-choice list)."""
    where = f"'{name}' in {source}"
    if isinstance(value, list):
        if not value:
            raise CTRBenchError(f"{where} is an empty list; give at least one choice")
        choices = config_mod.coerce_numbers(value, name)
        return Param(name, "categorical", choices) if len(choices) > 1 else None
    if isinstance(value, dict):
        value = config_mod.coerce_numbers(value)
        log_ = bool(value.get("log", False))
        if "int" in value:
            bounds = value["int"]
            extra = set(value) - {"int", "log", "step"}
            if extra or not (
                isinstance(bounds, list)
                and len(bounds) == 2
                and all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
            ):
                raise CTRBenchError(
                    f"{where}: an integer range is {{int: [low, high]}} with integer bounds "
                    f"(optionally log: true, step: N), got {value}"
                )
            param = Param(name, "int", low=bounds[0], high=bounds[1], log=log_, step=value.get("step"))
        elif {"low", "high"} <= set(value) and set(value) <= _RANGE_KEYS:
            if not all(
                isinstance(value[k], (int, float)) and not isinstance(value[k], bool) for k in ("low", "high")
            ):
                raise CTRBenchError(f"{where}: low and high must be numbers, got {value}")
            param = Param(
                name,
                "float",
                low=float(value["low"]),
                high=float(value["high"]),
                log=log_,
                step=float(value["step"]) if value.get("step") is not None else None,
            )
        else:
            raise CTRBenchError(
                f"{where} = {value} is neither a list of choices, a range {{low: A, high: B"
                f"[, log: true, step: S]}} nor an integer range {{int: [A, B]}}"
            )
        if not param.low < param.high:
            raise CTRBenchError(f"{where}: low ({param.low}) must be below high ({param.high})")
        if param.log and param.low <= 0:
            raise CTRBenchError(f"{where}: a log range needs low > 0, got {param.low}")
        if param.log and param.step:
            raise CTRBenchError(f"{where}: Optuna takes either log: true or a step, not both")
        return param
    return None


@dataclass
class Space:
    """What a study searches and how a trial's values become a run."""

    source: str
    expid: str
    config_dir: str
    params: list
    fixed: dict
    sets: list
    data_root: str | None
    base: dict  # resolved params of the base expid
    tuner_dir: str | None = None  # generated config directory (tuner file)
    tuner_specs: dict = field(default_factory=dict)  # labels tuple -> RunSpec
    doc: dict = field(default_factory=dict)

    @property
    def is_tuner_file(self) -> bool:
        return self.tuner_dir is not None

    def fingerprint(self) -> str:
        blob = json.dumps(
            {"expid": self.expid, "space": self.doc, "sets": sorted(self.sets)}, sort_keys=True, default=str
        )
        return hashlib.md5(blob.encode()).hexdigest()[:8]

    def grid(self) -> dict:
        ranges = [p.name for p in self.params if p.kind != "categorical"]
        if ranges:
            raise CTRBenchError(
                f"--sampler grid needs choices only; {', '.join(ranges)} in {self.source} "
                f"are ranges: use --sampler tpe or random, or list the values"
            )
        return {p.name: p.labels for p in self.params}

    def grid_size(self) -> int | None:
        if any(p.kind != "categorical" for p in self.params):
            return None
        return math.prod(len(p.choices) for p in self.params)

    def decode(self, labels: dict) -> dict:
        return {p.name: p.decode(labels[p.name]) for p in self.params}

    def spec_for(self, labels: dict) -> sweep_mod.RunSpec:
        """The run of a trial: its expid, config directory and overrides (config hash and run id filled)."""
        if self.is_tuner_file:
            key = tuple(labels[p.name] for p in self.params)
            if key not in self.tuner_specs:
                raise CTRBenchError(
                    f"trial values {labels} match no expid generated from {self.source}; the "
                    f"study was created with another tuner file: pass --study NEW"
                )
            spec = copy.copy(self.tuner_specs[key])
        else:
            values = self.decode(labels)
            sets = list(self.sets) + [f"{k}={json.dumps(v)}" for k, v in {**self.fixed, **values}.items()]
            spec = sweep_mod.RunSpec(self.expid, self.config_dir, None, sets, self.data_root)
        return sweep_mod.resolve([spec])[0]


def load_space(
    path: str, expid: str | None, config_dir: str, sets: list | None = None, data_root: str | None = None
) -> Space:
    if not os.path.isfile(path):
        raise CTRBenchError(
            f"--space {path} does not exist; write a YAML mapping of settings to choices or ranges"
        )
    doc = config_mod.read_yaml(path)
    sets = list(sets or [])
    if "base_expid" in doc:
        return _tuner_space(path, doc, expid, config_dir, sets, data_root)
    if not expid:
        raise CTRBenchError(
            f"{path} is a search space without base_expid; name the expid to tune with --expid"
        )
    body = doc.get("tuner_space", doc)
    if not isinstance(body, dict) or not body:
        raise CTRBenchError(
            f"{path} must map setting names to choices or ranges (optionally under tuner_space:)"
        )
    base = config_mod.load_config(config_dir, expid, sets, data_root)
    dataset = config_mod.load_dataset_config(config_dir, str(base["dataset_id"]), data_root)
    params, fixed = [], {}
    for name, value in body.items():
        name = str(name)
        if name not in base:
            raise CTRBenchError(
                f"'{name}' in {path} is not a setting of expid {expid} (its Base or the "
                f"defaults){config_mod.closest(name, base)}; add it to the expid first"
            )
        if name in dataset:
            raise CTRBenchError(
                f"'{name}' in {path} is a setting of dataset {base['dataset_id']}; tune dataset "
                f"settings through a FuxiCTR tuner file (each variant gets its own dataset id)"
            )
        param = parse_param(name, value, path)
        if param is not None:
            params.append(param)
        else:
            fixed[name] = config_mod.coerce_numbers(value[0] if isinstance(value, list) else value, name)
    if not params:
        raise CTRBenchError(f"{path} fixes every setting; give at least one list of choices or a range")
    return Space(path, expid, os.path.abspath(config_dir), params, fixed, sets, data_root, base, doc=body)


def _tuner_space(path, doc, expid, config_dir, sets, data_root) -> Space:
    base_expid = str(doc["base_expid"])
    if expid and expid != base_expid:
        raise CTRBenchError(
            f"--expid {expid} differs from base_expid {base_expid} of the tuner file {path}; "
            f"drop --expid or use a space file without base_expid"
        )
    if isinstance(doc.get("dataset_id"), list) and len(doc["dataset_id"]) > 1:
        raise CTRBenchError(
            f"{path} lists several dataset_ids; tune one dataset per study (one tuner file each)"
        )
    body = doc.get("tuner_space")
    if not isinstance(body, dict) or not body:
        raise CTRBenchError(f"tuner_space in {path} must map setting names to a value or a list of choices")
    ranged = [k for k, v in body.items() if isinstance(v, dict)]
    if ranged:
        raise CTRBenchError(
            f"{', '.join(ranged)} in the tuner file {path} are ranges; FuxiCTR tuner files take "
            f"lists of choices: put ranges in a space file without base_expid and pass --expid"
        )
    tuner_dir, specs = sweep_mod.expand_tuner(path, None, sets, data_root, config_dir)
    specs = sweep_mod.resolve(specs)
    params = [
        p
        for p in (parse_param(str(k), v if isinstance(v, list) else [v], path) for k, v in body.items())
        if p is not None
    ]
    table = {}
    for spec in specs:
        resolved = spec.load()
        table[tuple(_label(resolved[p.name]) for p in params)] = spec
    return Space(
        path, base_expid, tuner_dir, params, {}, sets, data_root, specs[0].load(), tuner_dir, table, doc=doc
    )


# ---- study --------------------------------------------------------------------------------------


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
    optuna.logging.set_verbosity(optuna.logging.WARNING)
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

    return True


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
            _retry(study, t)
            retried.append(t.number)
            log.info("trial %d was left running by process %d, which is gone: enqueued again", t.number, pid)
    return retried


def _retry(study, trial) -> None:
    optuna = require("optuna", "ctrbench tune")
    if trial.params.keys() != trial.distributions.keys() or not trial.params:
        return  # it died before drawing its values: nothing to repeat
    system = {
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


# ---- trials -------------------------------------------------------------------------------------


class TrialFailed(Exception):
    """A run crashed (not a config error): the trial is FAIL, the study goes on."""


class _Surplus(Exception):
    """Another process claimed the last trial at the same moment; this one is not needed."""


class PruningCallback:
    """Trainer callback: the validation monitor as the trial's intermediate value at each evaluation."""

    def __init__(self, trial, params: dict):
        self.trial, self.params, self.evaluations = trial, params, 0

    def on_eval(self, epoch: int, metrics: dict) -> None:
        optuna = require("optuna", "ctrbench tune")
        self.evaluations = int(metrics.get("evaluation", self.evaluations + 1))
        value = monitor_value(self.params, metrics)
        self.trial.report(value, self.evaluations)
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned at evaluation {self.evaluations} (epoch {epoch}): monitor {value:.6f}"
            )


@contextlib.contextmanager
def run_lock(params: dict):
    """Trials that drew the same config take turns (the runner refuses a second identical run at once);
    the second then reuses the first one's record or pruning."""
    from .runner import run_paths

    paths = run_paths(params)
    os.makedirs(paths.directory, exist_ok=True)
    with open(os.path.join(paths.directory, f"{paths.run_id}.tune.lock"), "w") as fd:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def _remove_run_files(params: dict) -> None:
    """A pruned run's weights and resume state are of no further use."""
    from .runner import run_paths

    paths = run_paths(params)
    for path in (paths.state, paths.checkpoint):
        if os.path.isfile(path):
            os.remove(path)


def _record_for(results: str, chash: str) -> dict | None:
    for rec in reversed(read_records(results)):
        if rec.get("config_hash") == chash:
            return rec
    return None


class Worker:
    """Runs trials of one study in this process until the study holds ``trials`` finished ones."""

    def __init__(
        self,
        cfg: TuneConfig,
        console: Console | None = None,
        space: Space | None = None,
        poll_seconds: float = 2.0,
        max_failures: int = 3,
    ):
        self.cfg = cfg
        self.console = console or Console(stderr=True)
        self.space = space or load_space(cfg.space_file, cfg.expid, cfg.config_dir, cfg.sets, cfg.data_root)
        self.poll_seconds = poll_seconds
        self.max_failures = max_failures
        self.ran: list[int] = []

    def objective(self, trial) -> float:
        optuna = require("optuna", "ctrbench tune")
        trial.set_user_attr("host", HOST)
        trial.set_user_attr("pid", os.getpid())
        finished = (
            optuna.trial.TrialState.COMPLETE,
            optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.RUNNING,
        )
        ahead = sum(
            1 for t in trial.study.get_trials(deepcopy=False, states=finished) if t.number < trial.number
        )
        if ahead >= self.cfg.trials:
            raise _Surplus(f"trial {trial.number} is beyond the {self.cfg.trials} requested")
        labels = {p.name: p.suggest(trial) for p in self.space.params}
        spec = self.space.spec_for(labels)
        from .runner import run_paths

        params = spec.load()
        params["gpu"], params["verbose"] = self.cfg.gpu, 0
        for key, value in (
            ("expid", spec.expid),
            ("config_dir", spec.config_dir),
            ("run_id", run_paths(params).run_id),
            ("config_hash", spec.config_hash),
        ):
            trial.set_user_attr(key, value)
        started = time.time()
        with run_lock(params):
            record = _record_for(self.cfg.results, spec.config_hash)
            if record is not None:
                trial.set_user_attr("reused", "record")
                for i, h in enumerate(record.get("history") or [], 1):
                    trial.report(monitor_value(params, h), i)
            else:
                twin = self._pruned_twin(trial, spec.config_hash)
                if twin is not None:
                    trial.set_user_attr("reused", f"pruned trial {twin.number}")
                    for step, value in sorted(twin.intermediate_values.items()):
                        trial.report(value, step)
                    raise optuna.TrialPruned(f"same config as pruned trial {twin.number}")
                record = self._run(trial, params, spec)
        trial.set_user_attr("seconds", round(time.time() - started, 3))
        trial.set_user_attr("valid", record.get("valid"))
        trial.set_user_attr("test", record.get("test"))
        trial.set_user_attr("best_epoch", record.get("best_epoch"))
        return monitor_value(params, record["valid"])

    def _pruned_twin(self, trial, chash: str):
        optuna = require("optuna", "ctrbench tune")
        for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,)):
            if t.number != trial.number and t.user_attrs.get("config_hash") == chash:
                return t
        return None

    def _run(self, trial, params: dict, spec) -> dict:
        from .runner import run_experiment

        optuna = require("optuna", "ctrbench tune")
        try:
            return run_experiment(
                params,
                self.cfg.results,
                self.console,
                quiet=True,
                resume=True,
                callbacks=[PruningCallback(trial, params)],
            )
        except optuna.TrialPruned:
            _remove_run_files(params)
            raise
        except (CTRBenchError, KeyboardInterrupt):
            raise
        except Exception as exc:  # one crashed run (e.g. a diverging config) fails its trial only
            from .runner import run_paths

            paths = run_paths(params)
            path = os.path.join(paths.directory, f"{paths.run_id}.trial{trial.number}.traceback")
            with open(path, "w") as fd:
                fd.write(traceback.format_exc())
            trial.set_user_attr("error", f"{exc.__class__.__name__}: {exc}"[:500])
            raise TrialFailed(
                f"trial {trial.number} ({spec.run_id}): {exc.__class__.__name__}: {exc} (traceback: {path})"
            ) from exc

    def _say(self, study, frozen) -> None:
        values = ", ".join(f"{k}={v}" for k, v in frozen.params.items())
        state = frozen.state.name.lower()
        what = f"{frozen.value:.6f}" if frozen.value is not None else ""
        if state == "pruned":
            steps = max(frozen.intermediate_values) if frozen.intermediate_values else 0
            what = f"at evaluation {steps}"
        elif state == "fail":
            what = frozen.user_attrs.get("error", "")
        c = counts(study)
        self.console.print(
            f"trial {frozen.number} {state} {what}  [{values}]  "
            f"({c['COMPLETE'] + c['PRUNED']}/{self.cfg.trials} finished)",
            highlight=False,
            soft_wrap=True,
        )

    def run(self) -> list[int]:
        optuna = require("optuna", "ctrbench tune")
        study = open_study(self.cfg, self.space)
        failures = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            while True:
                recover_dead_trials(study)
                optuna.storages.fail_stale_trials(study)
                c = counts(study)
                if c["COMPLETE"] + c["PRUNED"] >= self.cfg.trials:
                    break
                if c["COMPLETE"] + c["PRUNED"] + c["RUNNING"] >= self.cfg.trials and not c["WAITING"]:
                    time.sleep(self.poll_seconds)  # the rest are running elsewhere; one may still fail
                    continue
                before = {t.number for t in study.get_trials(deepcopy=False)}
                try:
                    study.optimize(
                        self.objective,
                        n_trials=1,
                        catch=(TrialFailed, _Surplus),
                        callbacks=[self._say],
                        gc_after_trial=False,
                    )
                except KeyboardInterrupt:  # Optuna failed the trial; queue it again for the next run
                    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
                        if t.number not in before and t.user_attrs.get("pid") == os.getpid():
                            _retry(study, t)
                    raise
                mine = [
                    t
                    for t in study.get_trials(deepcopy=False)
                    if t.number not in before and t.user_attrs.get("pid") == os.getpid()
                ]
                for t in mine:
                    if t.state == optuna.trial.TrialState.FAIL and "error" in t.user_attrs:
                        failures += 1
                        if failures >= self.max_failures:
                            raise CTRBenchError(
                                f"{failures} trials of study '{self.cfg.study}' crashed; the last: "
                                f"{t.user_attrs['error']}"
                            )
                    elif t.state != optuna.trial.TrialState.FAIL:
                        failures = 0
                        self.ran.append(t.number)
        return self.ran


# ---- parallel workers -----------------------------------------------------------------------------


def run_subprocess_workers(
    cfg: TuneConfig, jobs: int, gpus: list[int] | None, log_dir: str, console: Console, study
) -> None:
    """``jobs`` worker processes (``ctrbench tune --worker``) on one study; slot i trains on
    ``gpus[i % len(gpus)]`` or on one CPU thread."""
    os.makedirs(log_dir, exist_ok=True)
    procs = []
    for slot in range(jobs):
        gpu = gpus[slot % len(gpus)] if gpus else -1
        worker = TuneConfig(**{**cfg.__dict__, "gpu": gpu})
        threads = "1" if not gpus else str(max(1, (os.cpu_count() or 1) // jobs))
        env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
        path = os.path.join(log_dir, f"worker{slot}.log")
        fd = open(path, "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmark", "tune", "--worker", *worker.argv()],
            stdout=fd,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=os.getcwd(),
        )
        procs.append((proc, fd, path))
    shown = None
    try:
        while any(p.poll() is None for p, _, _ in procs):
            c = counts(study)
            now = (c["COMPLETE"], c["PRUNED"], c["RUNNING"], c["FAIL"])
            if now != shown:
                shown = now
                console.print(
                    f"tune {cfg.study}: {c['COMPLETE']} complete, {c['PRUNED']} pruned, "
                    f"{c['RUNNING']} running, {c['FAIL']} failed of {cfg.trials}",
                    highlight=False,
                )
            time.sleep(2.0)
    except KeyboardInterrupt:
        for proc, _, _ in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _, _ in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    finally:
        for _, fd, _ in procs:
            fd.close()
    bad = [(p.returncode, path) for p, _, path in procs if p.returncode != 0]
    if bad:
        with open(bad[0][1], errors="replace") as fd:
            tail = sweep_mod._error_tail(fd.read())
        raise CTRBenchError(
            f"{len(bad)} tune worker(s) failed (exit code {bad[0][0]}): {tail} (log: {bad[0][1]})"
        )


def ray_worker(cfg_dict: dict, gpu: int) -> list[int]:
    """A Ray task: one worker loop on the shared study (its storage must be reachable from the cluster)."""
    cfg = TuneConfig(**{**cfg_dict, "gpu": gpu})
    return Worker(cfg, Console(stderr=True, quiet=True)).run()


class TuneRayExecutor(sweep_mod.RayExecutor):
    """``sweep``'s Ray executor (cluster connection, slots per GPU, polling, cancel), each task a worker."""

    def __init__(self, address: str, jobs: int | None, gpus_per_run: float, ray_module=None):
        super().__init__(address, jobs, gpus_per_run, 1.0, None, ray_module=ray_module)
        self.task = self.ray.remote(num_gpus=gpus_per_run, num_cpus=1.0, max_retries=0)(ray_worker)

    def start_workers(self, cfg: TuneConfig) -> None:
        for slot in range(self.slots):
            spec = sweep_mod.RunSpec(f"{cfg.study}-worker{slot}", cfg.config_dir)
            self.refs[self.task.remote(dict(cfg.__dict__), 0 if self.gpus_per_run else -1)] = spec

    def wait(self, poll_seconds: float = 2.0) -> None:
        failed = []
        while self.running():
            for outcome in self.poll():
                if not outcome.ok:
                    failed.append(f"{outcome.spec.expid}: {outcome.error}")
            if self.running():
                time.sleep(poll_seconds)
        if failed:
            raise CTRBenchError(f"{len(failed)} Ray tune worker(s) failed: {failed[0]}")


# ---- results ------------------------------------------------------------------------------------


def tuned_expid(expid: str) -> str:
    return f"{expid}_tuned"


def write_tuned_config(space: Space, best, out_dir: str, study_name: str = "") -> tuple[str, str]:
    """The best trial's resolved config as ``<expid>_tuned`` in a self-contained config directory."""
    spec = space.spec_for(best.params)
    params = spec.load()
    dataset = config_mod.load_dataset_config(spec.config_dir, str(params["dataset_id"]), spec.data_root)
    internal = {"expid", "model_id", "config_dir"}
    model = {
        k: v for k, v in params.items() if k not in dataset and k not in internal and not k.startswith("_")
    }
    model["dataset_id"] = params["dataset_id"]
    data = {k: params[k] for k in dataset if not k.startswith("_") and k != "dataset_id"}
    config_dir = os.path.join(out_dir, "config")
    os.makedirs(config_dir, exist_ok=True)
    name = tuned_expid(space.expid)
    value = f"{best.value:.6f}" if best.value is not None else "?"
    header = (
        f"# {name}: trial {best.number} of study '{study_name}' "
        f"(validation monitor {value}; run {best.user_attrs.get('run_id')}),\n"
        f"# the resolved config of {space.expid} with the tuned values\n"
        f"# {json.dumps(space.decode(best.params))}.\n"
        f"# Written by 'ctrbench tune'; rerun it with: ctrbench run --config {config_dir} --expid {name}\n"
    )
    for fname, content in (
        ("model_config.yaml", {name: model}),
        ("dataset_config.yaml", {str(params["dataset_id"]): data}),
    ):
        with open(os.path.join(config_dir, fname), "w") as fd:
            fd.write(header)
            yaml.safe_dump(content, fd, sort_keys=False, default_flow_style=None, width=120)
    return config_dir, name


def top_trials_table(study, space: Space, n: int = 10) -> tuple[Table, str]:
    optuna = require("optuna", "ctrbench tune")
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    done.sort(key=lambda t: t.value, reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE)
    c = counts(study)
    title = (
        f"study {study.study_name}: {c['COMPLETE']} complete, {c['PRUNED']} pruned, {c['FAIL']} failed; "
        f"top {min(n, len(done))} by the validation monitor"
    )
    names = [p.name for p in space.params]
    cols = ["trial", "monitor", "test AUC", "best epoch", "seconds", *names]
    table = Table(title=title, title_justify="left")
    for col in cols:
        table.add_column(col, justify="left" if col in names else "right")
    rows = []
    for t in done[:n]:
        test = (t.user_attrs.get("test") or {}).get("AUC")
        decoded = space.decode(t.params)
        row = [
            str(t.number),
            f"{t.value:.6f}",
            f"{test:.6f}" if isinstance(test, (int, float)) else "",
            str(t.user_attrs.get("best_epoch", "")),
            f"{t.user_attrs.get('seconds', 0):.1f}",
            *[_short(decoded[k]) for k in names],
        ]
        rows.append(row)
        table.add_row(*row)
    md = (
        "\n".join(
            [
                f"{title}\n",
                "| " + " | ".join(cols) + " |",
                "|" + "---|" * len(cols),
                *["| " + " | ".join(r) + " |" for r in rows],
            ]
        )
        + "\n"
    )
    return table, md


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def write_plots(study, out_dir: str) -> list[str]:
    """Optuna's optimisation history, parameter importances and intermediate values as PNG."""
    optuna = require("optuna", "ctrbench tune")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    varying = {
        k for t in complete for k in t.params if len({json.dumps(u.params.get(k)) for u in complete}) > 1
    }
    plots = [("history.png", ovm.plot_optimization_history, bool(complete))]
    plots.append(("importances.png", ovm.plot_param_importances, len(complete) >= 2 and bool(varying)))
    plots.append(
        (
            "intermediate.png",
            ovm.plot_intermediate_values,
            any(t.intermediate_values for t in study.get_trials(deepcopy=False)),
        )
    )
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, plot, possible in plots:
            if not possible:
                log.info("no %s: not enough finished trials with varying values", name)
                continue
            ax = plot(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            path = os.path.join(out_dir, name)
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written


def finish(study, space: Space, cfg: TuneConfig, out_dir: str, console: Console, out: Console) -> dict:
    """Best config, top-trials table, trials.csv, plots and summary.json of a study."""
    optuna = require("optuna", "ctrbench tune")
    os.makedirs(out_dir, exist_ok=True)
    c = counts(study)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise CTRBenchError(
            f"study '{cfg.study}' has no complete trial ({c['PRUNED']} pruned, {c['FAIL']} failed); "
            f"widen the space, use --pruner none, or look at the failed trials' tracebacks"
        )
    best = study.best_trial
    config_dir, name = write_tuned_config(space, best, out_dir, cfg.study)
    table, md = top_trials_table(study, space)
    out.print(table)
    with open(os.path.join(out_dir, "top_trials.md"), "w") as fd:
        fd.write(md)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = study.trials_dataframe()
    frame.to_csv(os.path.join(out_dir, "trials.csv"), index=False)
    plots = write_plots(study, out_dir)
    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    summary = {
        "study": cfg.study,
        "storage": cfg.storage,
        "expid": space.expid,
        "space": os.path.abspath(space.source),
        "sampler": cfg.sampler,
        "pruner": cfg.pruner,
        "trials": cfg.trials,
        "states": c,
        "best": {
            "number": best.number,
            "value": best.value,
            "params": space.decode(best.params),
            "run_id": best.user_attrs.get("run_id"),
            "valid": best.user_attrs.get("valid"),
            "test": best.user_attrs.get("test"),
        },
        "trial_seconds": round(
            sum(
                (t.datetime_complete - t.datetime_start).total_seconds()
                for t in trials
                if t.datetime_start and t.datetime_complete
            ),
            3,
        ),
        "span_seconds": round((max(ends) - min(starts)).total_seconds(), 3) if starts and ends else None,
        "tuned": {"expid": name, "config_dir": config_dir},
        "plots": plots,
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as fd:
        json.dump(summary, fd, indent=2, default=str)
    out.print(
        f"best trial {best.number}: monitor {best.value:.6f} {json.dumps(space.decode(best.params))}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"tuned expid {name}: ctrbench run --config {config_dir} --expid {name} --seed N",
        highlight=False,
        soft_wrap=True,
    )
    for p in plots:
        out.print(p, highlight=False)
    return summary


def run_seeds(
    config_dir: str,
    expid: str,
    seeds,
    results: str,
    jobs: int | None,
    gpus: list[int] | None,
    console: Console,
    ray_address: str | None = None,
    ray_gpus: float = 1.0,
    data_root: str | None = None,
) -> dict:
    """The tuned expid over seeds through the sweep machinery (finished seeds are skipped); test mean/std."""
    import numpy as np

    specs = sweep_mod.resolve(sweep_mod.expand_expids(config_dir, expid, seeds, ["verbose=0"], data_root))
    pending = [s for s in specs if s.config_hash not in sweep_mod.finished_hashes(results)]
    sweep_mod.prebuild(pending)
    executor = sweep_mod.make_executor(results, jobs, gpus, ray_address, ray_gpus)
    result = sweep_mod.Sweep(specs, results, executor, 1, console, live=False).run()
    if result.failed:
        raise CTRBenchError(f"seed run {result.failed[0][0]} of {expid} failed: {result.failed[0][1]}")
    hashes = {s.config_hash for s in specs}
    records = {r["config_hash"]: r for r in read_records(results) if r.get("config_hash") in hashes}
    per_metric: dict = {}
    for rec in records.values():
        for k, v in (rec.get("test") or {}).items():
            per_metric.setdefault(k, []).append(float(v))
    return {
        "expid": expid,
        "seeds": sorted(r["seed"] for r in records.values()),
        "test": {
            k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
            for k, v in per_metric.items()
        },
    }
