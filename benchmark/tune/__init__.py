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

**Trials.** Each trial resolves to a ``sweep.RunSpec`` and runs through ``runner.run`` with
``RunOptions(resume=True)`` (run id ``<expid>_s<seed>_<config hash>``, as every run): it appends an ordinary record to
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

**Modules.** ``space`` (parameters, the space, tuner files), ``study`` (storage, sampler, pruner,
``TuneConfig``, dead trials), ``worker`` (one process's trials), ``parallel`` (worker subprocesses, Ray),
``results`` (tuned expid, tables, plots, seed runs), ``session`` (one ``ctrbench tune``).
"""

from __future__ import annotations

from .parallel import TuneRayExecutor, ray_worker, run_subprocess_workers
from .results import finish, run_seeds, top_trials_table, tuned_expid, write_plots, write_tuned_config
from .session import TuneOptions, run_tune
from .space import Param, Space, load_space, parse_param
from .study import (
    HOST,
    PRUNERS,
    SAMPLERS,
    TuneConfig,
    counts,
    default_out_dir,
    direction,
    make_pruner,
    make_sampler,
    make_storage,
    monitor_value,
    open_study,
    recover_dead_trials,
    retry_trial,
    storage_url,
)
from .worker import PruningCallback, TrialFailed, Worker, run_lock

__all__ = [
    "HOST",
    "PRUNERS",
    "Param",
    "PruningCallback",
    "SAMPLERS",
    "Space",
    "TrialFailed",
    "TuneConfig",
    "TuneOptions",
    "TuneRayExecutor",
    "Worker",
    "counts",
    "default_out_dir",
    "direction",
    "finish",
    "load_space",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "monitor_value",
    "open_study",
    "parse_param",
    "ray_worker",
    "recover_dead_trials",
    "retry_trial",
    "run_lock",
    "run_seeds",
    "run_subprocess_workers",
    "run_tune",
    "storage_url",
    "top_trials_table",
    "tuned_expid",
    "write_plots",
    "write_tuned_config",
]
