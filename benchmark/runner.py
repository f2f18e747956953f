"""One run, end to end: config -> built data -> feature map -> model -> fit -> metrics -> record.

    params = config.load_config(config_dir, expid, overrides)
    run(params, RunOptions(results=..., resume=..., ...))
      paths = run_paths(params)                        # <expid>_s<seed>_<config hash>: the run's own files
      preflight(params, results, paths)                # results file and model_root writable, before any step
      with RunLock(paths):                             # a second identical run at once is refused
        setup = prepare_run(params)                    # seed, build/reuse data, feature map, loaders, model
        result = Trainer(setup.model, params).train(setup.loaders, epochs)   # early stopping, resume state
        record = make_record(params, setup, result)    # from what the trainer returned
        records.append_record(results, record)

``prepare_run`` is the one place a run is set up; ``run``, ``sweep``, ``reproduce``, ``analyze`` and
``bench-infer`` all go through it. A run's files live in ``<model_root>/<dataset_id>/`` and are named by
its run id ``<expid>_s<seed>_<config hash>``, so two runs of one expid (other seeds, other ``--set``s,
parallel sweeps and tables) never share a file: ``<run_id>.model`` (best weights), ``<run_id>.resume.pt``
(full training state while the run is unfinished; removed once its record is written), ``<run_id>.log``
(appended to when the run resumes) and ``<run_id>.lock`` (held while the run trains). ``RunOptions(resume=True)``
continues from the run's own resume state (its config hash is checked). Under torchrun (``WORLD_SIZE`` > 1)
the run trains data-parallel (``benchmark/distributed.py``). The record carries the run id, the config
hash (computed before anything else touches the params), timings (s/epoch, samples/s, loader wait,
test-set inference ms per 100 samples), peak memory and the ``amp``/``compile``/``fused_optimizer``/
``world_size``/``resumed`` switches.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import resource
import tempfile
from dataclasses import dataclass, field

import torch
from rich.console import Console
from rich.table import Table

from model_zoo.base import count_parameters

from . import config as config_mod
from . import distributed, tracking
from .checkpoint import config_changes, describe_state, read_state, states_of_other_configs
from .data import build as build_mod
from .data import loader as loader_mod
from .distributed import DistContext
from .errors import CTRBenchError
from .records import append_record, environment, now
from .train import Trainer, TrainResult, amp_name

log = logging.getLogger("ctrbench")


def check_gpus(gpus: list[int], flag: str = "--gpus") -> None:
    """Every CUDA index of ``gpus`` is a device torch sees (negative ones mean the CPU)."""
    wanted = [g for g in gpus if g >= 0]
    if not wanted:
        return
    if not torch.cuda.is_available():
        raise CTRBenchError(
            f"{flag} {','.join(map(str, gpus))} asks for CUDA devices, but torch sees no GPU; leave {flag} out "
            f"(or give -1) to run on the CPU"
        )
    count = torch.cuda.device_count()
    missing = [g for g in wanted if g >= count]
    if missing:
        raise CTRBenchError(
            f"{flag} {','.join(map(str, gpus))}: only {count} CUDA device(s) are visible "
            f"(0..{count - 1}); {','.join(map(str, missing))} is not one of them"
        )


def select_device(gpu) -> str:
    gpu = int(gpu if gpu is not None else -1)
    check_gpus([gpu], "--gpu")
    return "cpu" if gpu < 0 else f"cuda:{gpu}"


# ---- the run's files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunPaths:
    """The files of one run, all under ``<model_root>/<dataset_id>/`` and named by the run id."""

    run_id: str
    directory: str

    def _file(self, suffix: str) -> str:
        return os.path.join(self.directory, self.run_id + suffix)

    @property
    def checkpoint(self) -> str:
        return self._file(".model")

    @property
    def state(self) -> str:
        return self._file(".resume.pt")

    @property
    def log(self) -> str:
        return self._file(".log")

    @property
    def lock(self) -> str:
        return self._file(".lock")


def run_id(params: dict, chash: str | None = None) -> str:
    """``<expid>_s<seed>_<config hash>``: equal only for runs of the same settings (the seed is part of the
    hash, and shown so that a run's files can be found by eye)."""
    chash = chash or config_mod.config_hash(params)
    return f"{params['expid']}_s{params.get('seed', 2023)}_{chash}"


def run_paths(params: dict, chash: str | None = None) -> RunPaths:
    directory = os.path.abspath(os.path.join(params["model_root"], params["dataset_id"]))
    return RunPaths(run_id(params, chash), directory)


def _writable_dir(path: str, what: str, fix: str) -> None:
    """Create ``path`` if needed and prove a file can be written in it (a probe file, removed again:
    permission bits alone say nothing for root or on read-only mounts)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise CTRBenchError(f"{what} {path} is a file, not a directory; {fix}")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".ctrbench-probe-"):
            pass
    except OSError as exc:
        raise CTRBenchError(
            f"{what} {path} is not writable ({exc.strerror or exc.__class__.__name__}); {fix}"
        )


def preflight(params: dict, results_path: str | None, paths: RunPaths) -> None:
    """What would otherwise fail after training, checked before the first step: the records file can be
    appended to and the run's directory under ``model_root`` written. Nothing existing is modified."""
    if results_path:
        results_path = os.path.abspath(results_path)
        if os.path.isdir(results_path):
            raise CTRBenchError(
                f"--results {results_path} is a directory; give the records file, "
                f"e.g. --results {os.path.join(results_path, 'runs.jsonl')}"
            )
        _writable_dir(
            os.path.dirname(results_path),
            "the folder of --results",
            "pass --results a path in a writable folder",
        )
        if os.path.exists(results_path):
            try:
                with open(results_path, "a"):
                    pass
            except OSError as exc:
                raise CTRBenchError(
                    f"--results {results_path} cannot be appended to ({exc.strerror}); "
                    f"fix its permissions or pass another --results file"
                )
    _writable_dir(
        paths.directory, "model_root folder", "set model_root (--set model_root=DIR) to a writable folder"
    )


class RunLock:
    """An exclusive ``flock`` on ``<run_id>.lock`` while the run trains: a second process starting the same
    run (same expid, seed and settings, same model_root) is refused instead of sharing its files. The
    kernel drops the lock when the holder dies, so a killed run never blocks its ``--resume``."""

    def __init__(self, paths: RunPaths, enabled: bool = True):
        self.paths, self.enabled, self.fd = paths, enabled, None

    def __enter__(self) -> "RunLock":
        if not self.enabled:
            return self
        path = self.paths.lock
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise CTRBenchError(
                    f"run {self.paths.run_id} is already running (pid {holder}, lock {path}): "
                    f"it would share its checkpoint and state files; wait for it to finish, "
                    f"or start this one with another --seed or --set model_root=DIR"
                )
            try:  # the holder may have removed the file between our open and flock: lock the current one
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.remove(self.paths.lock)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _file_logger(paths: RunPaths, rank: int = 0, append: bool = False) -> logging.Handler:
    os.makedirs(paths.directory, exist_ok=True)
    name = paths.log if not rank else paths.log.replace(".log", f".rank{rank}.log")
    handler = logging.FileHandler(name, mode="a" if append else "w")
    handler.setFormatter(logging.Formatter("%(asctime)s P%(process)d %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    return handler


# ---- setting a run up -------------------------------------------------------------------------------


def prepare_data(params: dict, quiet: bool = False):
    """Build/reuse the dataset and load its feature map."""
    directory = build_mod.build(params, quiet=quiet)
    feature_map = loader_mod.load_feature_map(directory, params)
    return directory, feature_map


# optimiser state per parameter value (fp32 moments), by lower-case torch.optim name; others count 2
STATE_PER_VALUE = {"sgd": 1, "adagrad": 1, "rmsprop": 1, "adadelta": 2, "adam": 2, "adamw": 2, "nadam": 2}


def embedding_rows(params: dict, feature_map) -> tuple[int, int]:
    """(rows, values) of the model's embedding tables from the feature map alone: a table per feature
    (shared ones once), ``vocab_size`` rows of its ``embedding_dim`` (the feature's, else the model's)."""
    rows = values = 0
    for spec in feature_map.features.values():
        if spec.get("share_embedding") or spec.get("type") not in ("categorical", "sequence"):
            continue
        n, dim = (
            int(spec.get("vocab_size") or 0),
            int(spec.get("embedding_dim") or params.get("embedding_dim") or 10),
        )
        rows, values = rows + n, values + n * dim
    return rows, values


def device_memory(device: str) -> tuple[int | None, str]:
    """Bytes a run may still allocate on ``device`` and what they are: CUDA's free memory, the host's
    available memory."""
    if device == "cpu":
        return build_mod.available_memory(), "available memory"
    return torch.cuda.mem_get_info(torch.device(device))[0], "free memory"


def check_table_memory(params: dict, feature_map, device: str, training: bool = True) -> None:
    """Before the model exists: its embedding tables, and in training their gradients and optimiser
    state, must fit in what ``device`` has left; otherwise one line with the sizes and what to change."""
    rows, values = embedding_rows(params, feature_map)
    per_value = 4  # fp32 parameters
    optimizer = str(params.get("embedding_optimizer") or "dense")
    if training and optimizer == "dense":  # a dense gradient and the model optimiser's state per value
        extra = 1 + STATE_PER_VALUE.get(str(params.get("optimizer", "adam")).lower(), 2)
    elif training:  # sparse gradients of the batch's rows; SparseAdam keeps two moments per value
        extra = 2 if optimizer == "sparse_adam" else 0
    else:
        extra = 0
    need = values * per_value * (1 + extra) + (
        rows * per_value if training and optimizer == "rowwise_adagrad" else 0
    )
    have, what = device_memory(device)
    if have is None or need <= 0.9 * have:
        return
    hashed = sorted({int(s["hash_buckets"]) for s in feature_map.features.values() if s.get("hash_buckets")})
    fewer = (
        f"fewer hash buckets (--set hash_buckets=N, now {', '.join(f'{b:,}' for b in hashed)})"
        if hashed
        else "smaller vocabularies (a higher min_categr_count) or a smaller embedding_dim"
    )
    sparse = (
        "the sparse embedding optimiser (--set embedding_optimizer=rowwise_adagrad: one state value per row)"
        if training and optimizer != "rowwise_adagrad"
        else None
    )
    state = (
        f" and training {extra}x that again (gradients, {params.get('optimizer', 'adam')} state)"
        if extra
        else ""
    )
    raise CTRBenchError(
        f"{params['expid']}: {params['model']}'s embedding tables ({rows:,} rows, {values * per_value / 2**30:.2f} "
        f"GiB){state} need {need / 2**30:.2f} GiB, but {device} has {have / 2**30:.2f} GiB of {what}; use "
        f"{', '.join(x for x in (fewer, sparse) if x)} or a device with more memory"
    )


@dataclass
class RunSetup:
    """A run ready to train or predict: its data, loaders, model (on its device) and files."""

    params: dict
    paths: RunPaths
    dist: DistContext
    device: str
    directory: str
    feature_map: object
    loaders: dict
    model: object

    @property
    def n_params(self) -> int:
        return count_parameters(self.model)


def prepare_run(
    params: dict,
    dist: DistContext | None = None,
    splits=("train", "valid", "test"),
    require=("train", "valid"),
    loader_params: dict | None = None,
    quiet: bool = True,
    paths: RunPaths | None = None,
) -> RunSetup:
    """Seed, build (or reuse) the data, load the feature map, make the loaders of ``splits`` (with
    ``loader_params`` overriding e.g. the batch size) and create the model on the run's device, with
    its best-checkpoint path set to the run's own. Under torchrun rank 0 builds first. A split of
    ``require`` that the dataset lacks is a one-line error."""
    from fuxictr.pytorch.torch_utils import seed_everything

    import model_zoo

    dist = dist or DistContext()
    gpu = distributed.device_index(dist, params.get("gpu", -1))
    device = select_device(gpu)
    paths = paths or run_paths(params)
    seed_everything(int(params.get("seed", 2023)))
    if dist.is_main:
        directory, feature_map = prepare_data(params, quiet=quiet)
    dist.barrier()
    if not dist.is_main:
        directory, feature_map = prepare_data(params, quiet=True)
    loaders = loader_mod.make_loaders(
        feature_map,
        directory,
        {**params, **(loader_params or {})},
        splits=splits,
        pin_memory=device != "cpu",
        device=device,
    )
    missing = [s for s in require if s not in loaders]
    if missing:
        hint = " (set valid_data or valid_size)" if "valid" in missing else ""
        raise CTRBenchError(f"dataset '{params['dataset_id']}' has no {' or '.join(missing)} split{hint}")
    check_table_memory(params, feature_map, device, training="train" in splits)
    model = model_zoo.create_model({**params, "gpu": gpu}, feature_map)
    model.checkpoint = paths.checkpoint
    return RunSetup(params, paths, dist, device, directory, feature_map, loaders, model)


# ---- one run ----------------------------------------------------------------------------------------


@dataclass
class RunOutput:
    record: dict
    setup: RunSetup
    result: TrainResult


def make_record(params: dict, setup: RunSetup, result: TrainResult, chash: str) -> dict:
    """The run record: what the trainer returned, the run's identity and where it ran."""
    return {
        "time": now(),
        "expid": params["expid"],
        "model": params["model"],
        "report_name": params.get("report_name") or params["model"],
        "dataset_id": params["dataset_id"],
        "seed": int(params.get("seed", 2023)),
        **result.as_record(),
        "params": setup.n_params,
        "peak_memory_mb": round(_peak_memory_mb(setup.device), 1),
        "device": setup.device,
        "amp": amp_name(params.get("amp")),
        "compile": params.get("compile") or False,
        "run_id": setup.paths.run_id,
        "config_hash": chash,
        "config": {k: v for k, v in params.items() if not k.startswith("_")},
        "env": environment(),
    }


@dataclass
class RunOptions:
    """How one run is carried out, apart from its config (none of it changes the config hash or record).

        ``results``: the records file its record is appended to (None: no record is written); ``resume``:
        continue from the run's own resume state when one exists (saved by an interrupted run of the same
        config); ``tensorboard``/``mlflow``: tracking on top of the config's own keys (``benchmark/tracking.py``);
        ``restart``: start over, deleting the state of an unfinished run of this config (without ``resume`` or
    ``restart`` such a state is an error: it is kept until the user chooses); ``progress_file``: the JSON
    progress file a sweep reads; ``quiet``: no header, bar or metrics table;
        ``callbacks``: trainer callbacks (``on_step``/``on_eval``/``on_end(record)``/``close``, see ``Trainer``).
    """

    results: str | None = None
    resume: bool = False
    restart: bool = False
    quiet: bool = False
    console: Console | None = None
    tensorboard: str | None = None
    mlflow: str | None = None
    progress_file: str | None = None
    callbacks: list = field(default_factory=list)


def run(params: dict, options: RunOptions | None = None) -> RunOutput:
    """Train and evaluate one resolved config: the one way into a run (``ctrbench run``, sweeps, tuning,
    tables, analyses). Appends the record to ``options.results`` (when given) and returns it with the
    trained setup (model, loaders) and the trainer's result. Under torchrun the run is data-parallel over
    the ranks; the tracking callbacks run on rank 0. An exception a callback raises
    (``optuna.TrialPruned``) propagates and no record is written."""
    opts = options or RunOptions()
    console = opts.console or Console(stderr=True)
    chash = config_mod.config_hash(params)
    paths = run_paths(params, chash)
    ctx = distributed.init(params.get("gpu", -1))
    callbacks = list(opts.callbacks)
    try:
        quiet = opts.quiet or not ctx.is_main
        if ctx.is_main:
            preflight(params, opts.results, paths)
        with RunLock(paths, enabled=ctx.is_main):
            saved = saved_state(params, paths, chash, ctx, opts)
            handler = _file_logger(paths, ctx.rank, append=saved is not None)
            try:
                if ctx.is_main:
                    callbacks += tracking.callbacks_for(
                        params, paths.run_id, handler.baseFilename, opts.tensorboard, opts.mlflow
                    )
                setup = prepare_run(params, ctx, quiet=quiet, paths=paths)
                output = _train(setup, opts, console, quiet, saved, callbacks, chash)
            finally:
                for callback in callbacks:
                    if hasattr(callback, "close"):
                        callback.close()
                logging.getLogger().removeHandler(handler)
                handler.close()
        return output
    finally:
        distributed.shutdown(ctx)


def saved_state(params: dict, paths: RunPaths, chash: str, ctx: DistContext, opts: RunOptions) -> dict | None:
    """The run's own resume state to continue from (read and checked before any work: format, config hash,
    processes), or None to start afresh. A state of this config without ``resume`` or ``restart`` is an
    error; ``restart`` deletes it; ``resume`` without one warns about states of this expid and seed saved
    by other settings (they are other runs)."""
    if opts.resume and opts.restart:
        raise CTRBenchError("--resume and --restart contradict each other; give one")
    exists = os.path.isfile(paths.state)
    if exists and opts.resume:
        return read_state(paths.state, chash, ctx.world_size)
    if exists and not opts.restart:
        raise CTRBenchError(
            f"an unfinished run of this config exists: {paths.run_id} stopped at "
            f"{describe_state(paths.state)} ({paths.state}); continue it with --resume, or start over "
            f"with --restart (deletes that state)"
        )
    if exists:
        ctx.barrier()  # every rank has seen the file before rank 0 deletes it
        if ctx.is_main:
            os.remove(paths.state)
            log.info("--restart: removed the saved state %s", paths.state)
        return None
    if opts.resume:
        prefix = paths.run_id[: -len(chash)]  # <expid>_s<seed>_
        others = states_of_other_configs(paths.directory, prefix, paths.state)
        if others and ctx.is_main:
            changes = config_changes(others[0], params)
            log.warning(
                "--resume: no saved state of this config (%s); the unfinished run %s (%s) was saved with "
                "other settings%s; this run starts from scratch (run with those settings to continue that one)",
                paths.run_id,
                os.path.basename(others[0])[: -len(".resume.pt")],
                describe_state(others[0]),
                f": {changes}"
                if changes
                else f" (config hash {os.path.basename(others[0])[len(prefix) : -10]})",
            )
        else:
            log.info("No resume state at %s; starting from scratch", paths.state)
    return None


def _train(setup: RunSetup, opts: RunOptions, console, quiet, saved, callbacks, chash) -> RunOutput:
    params, ctx, paths = setup.params, setup.dist, setup.paths
    if not quiet:
        where = f"{setup.device}, {ctx.world_size} processes" if ctx.enabled else setup.device
        console.print(
            f"[bold]{params['expid']}[/]: {params['model']} on {params['dataset_id']} "
            f"({setup.n_params:,} parameters, {setup.loaders['train'].num_samples:,} train rows, "
            f"{where})",
            highlight=False,
        )
    if setup.device != "cpu":
        torch.cuda.reset_peak_memory_stats(setup.device)
    trainer = Trainer(
        setup.model,
        params,
        console,
        dist=ctx,
        state_file=paths.state,
        progress_file=opts.progress_file,
        config_hash=chash,
        callbacks=callbacks,
    )
    if saved is not None:
        state = trainer.load_state(saved)
        if not quiet:
            console.print(
                f"resuming {paths.run_id} at epoch {state.epoch + 1}, batch {state.batch} ({paths.state})",
                highlight=False,
            )
    result = trainer.train(setup.loaders, params.get("epochs", 1))
    record = make_record(params, setup, result, chash)
    if opts.results and ctx.is_main:
        append_record(opts.results, record)
    trainer.remove_state()
    trainer.write_progress("done", force=True)
    for callback in callbacks:
        if hasattr(callback, "on_end"):
            callback.on_end(record)
    if not quiet:
        console.print(metrics_table(record))
    return RunOutput(record, setup, result)


def _peak_memory_mb(device: str) -> float:
    if device != "cpu":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def metrics_table(record: dict) -> Table:
    table = Table(title=f"{record['expid']} (seed {record['seed']}, best epoch {record['best_epoch']})")
    table.add_column("split")
    names = list(record["valid"].keys())
    for name in names:
        table.add_column(name, justify="right")
    for split in ("valid", "test"):
        if record.get(split):
            table.add_row(split, *[f"{record[split][n]:.6f}" for n in names])
    return table
