"""Sweeps: many runs from expid patterns or FuxiCTR tuner files, resumable through the run records.

    ctrbench sweep --expids 'DCN_tiny,DNN_tiny' --seeds 3 --jobs 2
    ctrbench sweep --tuner config/tuner/DCN_tiny_tuner.yaml --gpus 0,1,2,3
    ctrbench sweep --tuner FILE --ray-address auto            # one GPU per run on a Ray cluster
    ctrbench sweep --expids '*_tiny' --ray-address local --ray-gpus 0   # a Ray instance started here

**Expansion.** ``--expids`` takes comma-separated globs over the expids of ``--config``. A tuner file
(FuxiCTR's format) names ``base_config`` (a config directory, relative to the tuner file or the
working directory), ``base_expid``, optionally ``dataset_id`` (one id or a list) and inline
``model_config``/``dataset_config`` sections, and a ``tuner_space`` whose list values are the choices
(``[[400, 400]]`` is one list-valued choice) and whose scalars are fixed values; ``seed: [..]`` in the
space gives one expid per seed. Every key must exist in the expid, its dataset, Base or the defaults.
A key of the dataset section makes a dataset variant with its own id ``<dataset_id>_<md5[:8]>`` (so
its build never overwrites another's). Runs are named ``<base_expid>_<NNN>_<md5[:8]>`` (md5 of the
run's model section; a ``dataset_id: TBD`` base becomes ``<model>_<dataset_id>``) and written, with
the dataset sections (paths resolved), to ``<tuner file without .yaml>/``, so any one of them can be
rerun with ``ctrbench run --config <that dir> --expid <name>``. ``--seeds N`` repeats every run with N
seeds (the configured seed, +1, ...); ``--seeds 1,2,3`` uses those seeds.

**Ledger.** Records carry ``config_hash``; a run whose hash is already in the records file is
skipped, so an interrupted sweep rerun with the same command runs only what is missing. Each run has
its own files (run id ``<expid>_s<seed>_<hash>``, as every run) and is started with ``--resume``, so a
run that was killed continues from its last saved state. Failed runs are retried ``--retries`` times and, like
interrupted ones, queued again by the next invocation. ``<results>.sweep/ledger.jsonl`` keeps one
line per state change (queued, started, done, failed, interrupted, skipped) with the error tail;
``logs/`` and ``progress/`` hold each run's output and live progress.

**Execution.** Datasets are built (or reused) once in the parent before any run starts. Runs go to
an executor: in-process (``--jobs 1``), subprocesses (``--jobs N``: one ``ctrbench run`` per slot,
one thread each on CPU; ``--gpus 0,1``: slot i trains on GPU ``gpus[i % len(gpus)]``), or Ray tasks
(``--ray-address``: a running cluster, ``auto`` for the local one, or ``local`` to start one here;
each task holds ``--ray-gpus`` GPUs, trains on the GPU Ray assigns, and returns its record to the
driver; the config directory and data must be reachable from the workers). A rich live table shows
each running run's epoch, position, last validation AUC, best, samples/s and ETA.
"""

from .executors import (
    InProcessExecutor,
    Outcome,
    RayExecutor,
    SubprocessExecutor,
    _error_tail,
    execute_spec,
    make_executor,
)
from .expand import RunSpec, expand_expids, expand_tuner, finished_hashes, parse_seeds, prebuild, resolve
from .ledger import Entry, Ledger, Sweep, SweepResult, sweep_dir

__all__ = [
    "Entry",
    "InProcessExecutor",
    "Ledger",
    "Outcome",
    "RayExecutor",
    "RunSpec",
    "SubprocessExecutor",
    "Sweep",
    "SweepResult",
    "execute_spec",
    "expand_expids",
    "expand_tuner",
    "finished_hashes",
    "make_executor",
    "parse_seeds",
    "prebuild",
    "resolve",
    "sweep_dir",
    "_error_tail",
]
