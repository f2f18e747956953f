"""Sweeps: many runs from expid patterns or FuxiCTR tuner files, resumable through the run records.

    ctrbench sweep --expids 'DCN_tiny,DNN_tiny' --seeds 3 --jobs 2
    ctrbench sweep --tuner config/tuner/DCN_tiny_tuner.yaml --gpus 0,1,2,3
    ctrbench sweep --tuner FILE --ray-address auto            # one GPU per run on a Ray cluster

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
its own files (``_run_id = <expid>_<hash>``) and is started with ``--resume``, so a run that was
killed continues from its last saved state. Failed runs are retried ``--retries`` times and, like
interrupted ones, queued again by the next invocation. ``<results>.sweep/ledger.jsonl`` keeps one
line per state change (queued, started, done, failed, interrupted, skipped) with the error tail;
``logs/`` and ``progress/`` hold each run's output and live progress.

**Execution.** Datasets are built (or reused) once in the parent before any run starts. Runs go to
an executor: in-process (``--jobs 1``), subprocesses (``--jobs N``: one ``ctrbench run`` per slot,
one thread each on CPU; ``--gpus 0,1``: slot i trains on GPU ``gpus[i % len(gpus)]``), or Ray tasks
(``--ray-address``: each task holds ``--ray-gpus`` GPUs, trains on the GPU Ray assigns, and returns its
record to the driver; the config directory and data must be reachable from the workers). A rich
live table shows each running run's epoch, position, last validation AUC, best, samples/s and ETA.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field

import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from . import config as config_mod
from .errors import CTRBenchError
from .records import append_record, now, read_records


# ---- run specs ------------------------------------------------------------------------------------

@dataclass
class RunSpec:
    """One run of a sweep: an expid of a config directory, a seed and extra ``--set`` overrides."""

    expid: str
    config_dir: str
    seed: int | None = None
    sets: list = field(default_factory=list)
    data_root: str | None = None
    config_hash: str = ""
    run_id: str = ""
    model: str = ""
    dataset_id: str = ""

    def overrides(self) -> list[str]:
        return list(self.sets) + ([f"seed={self.seed}"] if self.seed is not None else [])

    def load(self) -> dict:
        """The run's resolved params (read once; YAML parsing dominates a tiny run's cost)."""
        key = (self.config_dir, self.expid, tuple(self.overrides()), self.data_root)
        cached = getattr(self, "_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, config_mod.load_config(self.config_dir, self.expid, self.overrides(), self.data_root))
            object.__setattr__(self, "_cache", cached)
        params = copy.deepcopy(cached[1])
        if self.run_id:
            params["_run_id"] = self.run_id
        return params

    @property
    def label(self) -> str:
        return f"{self.expid} s{self.seed}" if self.seed is not None else self.expid

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        return cls(**d)


def parse_seeds(text: str | None) -> int | list[int] | None:
    """'5' -> 5 seeds; '1,2,3' -> those seeds; None -> the configured seed."""
    if text is None or str(text).strip() == "":
        return None
    text = str(text).strip()
    try:
        if "," in text:
            return [int(s) for s in text.split(",") if s.strip()]
        count = int(text)
    except ValueError:
        raise CTRBenchError(f"--seeds {text}: give a count (--seeds 5) or a list (--seeds 2021,2022)")
    if count < 1:
        raise CTRBenchError(f"--seeds {text}: the count must be at least 1")
    return count


def expand_expids(config_dir: str, patterns: str, seeds=None, sets=None, data_root=None) -> list[RunSpec]:
    """Runs for every expid matching one of the comma-separated globs, times the seeds."""
    config_dir = os.path.abspath(config_dir)
    expids = config_mod.list_expids(config_dir)
    globs = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [e for e in expids if any(fnmatch.fnmatchcase(e, g) for g in globs)]
    if not chosen:
        raise CTRBenchError(f"--expids {patterns} matches no expid in {config_dir}; list them with "
                            f"'ctrbench expids'")
    specs = []
    for expid in chosen:
        spec = RunSpec(expid, config_dir, None, list(sets or []), data_root)
        base_seed = int(spec.load().get("seed", 2023)) if isinstance(seeds, int) else 0
        specs += _with_seeds(spec, seeds, base_seed)
    return specs


def _with_seeds(spec: RunSpec, seeds, base_seed: int) -> list[RunSpec]:
    if seeds is None:
        return [spec]
    values = list(range(base_seed, base_seed + seeds)) if isinstance(seeds, int) else list(seeds)
    out = []
    for s in values:
        run = RunSpec(spec.expid, spec.config_dir, s, list(spec.sets), spec.data_root)
        if getattr(spec, "_cache", None) is not None:     # same files: only the seed differs
            params = copy.deepcopy(spec._cache[1])
            params["seed"] = s
            object.__setattr__(run, "_cache", ((run.config_dir, run.expid, tuple(run.overrides()), run.data_root),
                                               params))
        out.append(run)
    return out


def _md5(obj) -> str:
    return hashlib.md5(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _find_dir(path: str, tuner_dir: str) -> str:
    for candidate in (os.path.join(tuner_dir, path), path):
        if os.path.isdir(candidate):
            return os.path.abspath(candidate)
    raise CTRBenchError(f"base_config {path} (relative to {tuner_dir} or the working directory) is not a "
                        f"directory; point it at a config directory with model_config/ and dataset_config/")


def expand_tuner(tuner_file: str, seeds=None, sets=None, data_root=None,
                 default_config: str | None = None) -> tuple[str, list[RunSpec]]:
    """Expand a FuxiCTR tuner file into a generated config directory and its runs."""
    if not os.path.isfile(tuner_file):
        raise CTRBenchError(f"--tuner {tuner_file} does not exist")
    doc = config_mod.read_yaml(tuner_file)
    tuner_dir = os.path.dirname(os.path.abspath(tuner_file))
    for key in ("base_expid", "tuner_space"):
        if key not in doc:
            raise CTRBenchError(f"{tuner_file} has no '{key}'; a tuner file needs base_expid and tuner_space")
    space = doc["tuner_space"]
    if not isinstance(space, dict) or not space:
        raise CTRBenchError(f"tuner_space in {tuner_file} must map setting names to a value or a list of choices")
    space = {k: config_mod.coerce_numbers(v if isinstance(v, list) else [v], k) for k, v in space.items()}
    base_expid = str(doc["base_expid"])
    if doc.get("base_config"):
        base_config = _find_dir(str(doc["base_config"]), tuner_dir)
    elif os.path.isdir(os.path.join(tuner_dir, "model_config")) or os.path.isfile(os.path.join(tuner_dir, "model_config.yaml")):
        base_config = tuner_dir
    else:
        base_config = os.path.abspath(default_config or "config")
    sections = config_mod.load_sections(base_config, "model_config") \
        if (os.path.isdir(os.path.join(base_config, "model_config"))
            or os.path.isfile(os.path.join(base_config, "model_config.yaml"))) else {}
    base_section = dict(sections.get("Base", ({}, ""))[0])
    if isinstance(doc.get("model_config"), dict) and base_expid in doc["model_config"]:
        model_section = dict(doc["model_config"][base_expid] or {})
        base_section.update(doc["model_config"].get("Base") or {})
    elif base_expid in sections:
        model_section = dict(sections[base_expid][0])
    else:
        raise CTRBenchError(f"base_expid {base_expid} of {tuner_file} is neither in {base_config}/model_config "
                            f"nor inline under model_config{config_mod.closest(base_expid, sections)}")
    model_section = config_mod.coerce_numbers(model_section)
    base_section = config_mod.coerce_numbers(base_section)
    dataset_ids = doc.get("dataset_id", model_section.get("dataset_id"))
    dataset_ids = dataset_ids if isinstance(dataset_ids, list) else [dataset_ids]
    if not dataset_ids or any(d in (None, "TBD") for d in dataset_ids):
        raise CTRBenchError(f"{tuner_file}: base expid {base_expid} has dataset_id TBD; set dataset_id in the tuner file")

    datasets = {}
    for ds in map(str, dataset_ids):
        inline = doc.get("dataset_config") or {}
        if ds in inline:
            body = config_mod.coerce_numbers(dict(inline[ds] or {}))
            section = config_mod.resolve_dataset_paths(body, tuner_dir, data_root)
        else:
            section = config_mod.load_dataset_config(base_config, ds, data_root)
        datasets[ds] = {k: v for k, v in section.items() if not k.startswith("_") and k != "dataset_id"}

    known = set(config_mod.DEFAULTS) | set(base_section) | set(model_section)
    for ds, section in datasets.items():
        unknown = [k for k in space if k not in known and k not in section]
        if unknown:
            raise CTRBenchError(f"tuner_space key(s) {', '.join(unknown)} in {tuner_file} are not settings of "
                                f"expid {base_expid} or dataset {ds}; add them to the expid first (as FuxiCTR requires)")

    out_dir = os.path.splitext(os.path.abspath(tuner_file))[0]
    model_out: dict = {"Base": base_section} if base_section else {}
    dataset_out: dict = {}
    specs: list[RunSpec] = []
    index = 0
    for ds, section in datasets.items():
        dkeys = [k for k in space if k in section]          # dataset settings: a dataset variant each
        mkeys = [k for k in space if k not in section]      # model settings
        for model_values in itertools.product(*(space[k] for k in mkeys)):
            for ds_values in itertools.product(*(space[k] for k in dkeys)):
                variant = {**section, **dict(zip(dkeys, ds_values))}
                ds_id = f"{ds}_{_md5(variant)}" if dkeys else ds
                dataset_out[ds_id] = variant
                run_section = {**model_section, **dict(zip(mkeys, model_values)), "dataset_id": ds_id}
                index += 1
                base_name = f"{model_section.get('model', base_expid)}_{ds}" \
                    if model_section.get("dataset_id") in (None, "TBD") else base_expid
                name = f"{base_name}_{index:03d}_{_md5(run_section)}"
                model_out[name] = run_section
                specs.append(RunSpec(name, out_dir, None, list(sets or []), None))
    os.makedirs(out_dir, exist_ok=True)
    header = f"# Generated by 'ctrbench sweep' from {os.path.abspath(tuner_file)}; edits are overwritten.\n"
    for fname, content in (("model_config.yaml", model_out), ("dataset_config.yaml", dataset_out)):
        with open(os.path.join(out_dir, fname), "w") as fd:
            fd.write(header)
            yaml.safe_dump(content, fd, sort_keys=False, default_flow_style=None, width=120)
    expanded = []
    for spec in specs:
        base_seed = int(spec.load().get("seed", 2023)) if isinstance(seeds, int) else 0
        expanded += _with_seeds(spec, seeds, base_seed)
    return out_dir, expanded


def resolve(specs: list[RunSpec]) -> list[RunSpec]:
    """Fill config_hash/run_id/model/dataset_id; drop exact duplicates (same config hash)."""
    seen, out = set(), []
    for spec in specs:
        params = spec.load()
        spec.config_hash = config_mod.config_hash(params)
        spec.run_id = f"{spec.expid}_{spec.config_hash}"
        spec.model, spec.dataset_id = str(params["model"]), str(params["dataset_id"])
        if spec.config_hash not in seen:
            seen.add(spec.config_hash)
            out.append(spec)
    return out


def finished_hashes(results_path: str) -> set[str]:
    return {r["config_hash"] for r in read_records(results_path) if r.get("config_hash")}


def prebuild(specs: list[RunSpec], quiet: bool = True) -> None:
    """Build (or reuse) every dataset the runs need, once, before runs start in parallel."""
    from .data import build as build_mod

    built: dict[str, str] = {}
    for spec in specs:
        params = spec.load()
        target = build_mod.data_dir(params)
        if target in built:
            info = build_mod.read_info(target)
            if info and info.get("key") != build_mod.build_key(params):
                raise CTRBenchError(f"runs {built[target]} and {spec.label} need different builds of "
                                    f"{params['dataset_id']} in {target}; tune dataset keys through a tuner file "
                                    f"(it gives each variant its own dataset id) or set build_root per run")
            continue
        build_mod.build(params, quiet=quiet)
        built[target] = spec.label


# ---- ledger -------------------------------------------------------------------------------------

class Ledger:
    """Append-only JSON lines: one event per run state change."""

    def __init__(self, path: str):
        self.path = path

    def event(self, spec: RunSpec, status: str, **extra) -> None:
        append_record(self.path, {"time": now(), "status": status, "run_id": spec.run_id, "expid": spec.expid,
                                  "seed": spec.seed, "config_hash": spec.config_hash, **extra})

    def events(self) -> list[dict]:
        return read_records(self.path)


# ---- executors ------------------------------------------------------------------------------------

@dataclass
class Outcome:
    spec: RunSpec
    ok: bool
    error: str | None = None
    record: dict | None = None


def _error_tail(text: str, lines: int = 3) -> str:
    picked = [l for l in text.splitlines() if l.strip()]
    errors = [l for l in picked if "error" in l.lower()]
    return " | ".join((errors or picked)[-lines:])[-500:]


class InProcessExecutor:
    """Runs one spec at a time inside this process (no start-up cost per run)."""

    slots = 1
    appends_records = True

    def __init__(self, results: str, progress_dir: str | None = None, log_dir: str | None = None, gpu: int = -1):
        self.results, self.progress_dir, self.log_dir, self.gpu = results, progress_dir, log_dir, gpu
        self._done: list[Outcome] = []

    def start(self, spec: RunSpec, slot: int) -> None:
        from .runner import run_experiment

        try:
            params = spec.load()
            params["verbose"], params["gpu"] = 0, self.gpu
            if self.progress_dir:
                params["_progress_file"] = os.path.join(self.progress_dir, f"{spec.run_id}.json")
            record = run_experiment(params, self.results, quiet=True, resume=True)
            self._done.append(Outcome(spec, True, record=record))
        except CTRBenchError as exc:
            self._done.append(Outcome(spec, False, exc.message))
        except Exception as exc:  # a crash of one run must not end the sweep
            error = f"{exc.__class__.__name__}: {exc}"
            if self.log_dir:
                path = os.path.join(self.log_dir, f"{spec.run_id}.log")
                with open(path, "w") as fd:
                    fd.write(traceback.format_exc())
                error += f" (traceback: {path})"
            self._done.append(Outcome(spec, False, error))

    def poll(self) -> list[Outcome]:
        done, self._done = self._done, []
        return done

    def running(self) -> int:
        return 0

    def cancel(self) -> None:
        pass


class SubprocessExecutor:
    """One ``ctrbench run --resume`` process per slot; slot i uses GPU gpus[i % len(gpus)] or 1 CPU thread."""

    appends_records = True

    def __init__(self, results: str, jobs: int, gpus: list[int] | None, log_dir: str, progress_dir: str,
                 threads: int | None = None, python: str = sys.executable):
        self.results, self.slots, self.gpus = results, max(1, jobs), list(gpus or [])
        self.log_dir, self.progress_dir, self.python = log_dir, progress_dir, python
        cpus = os.cpu_count() or 1
        self.threads = threads or (1 if not self.gpus else max(1, cpus // self.slots))
        self.procs: dict[int, tuple] = {}

    def command(self, spec: RunSpec, slot: int) -> list[str]:
        cmd = [self.python, "-m", "benchmark", "run", "--config", spec.config_dir, "--expid", spec.expid,
               "--results", self.results, "--resume",
               "--gpu", str(self.gpus[slot % len(self.gpus)] if self.gpus else -1)]
        if spec.data_root:
            cmd += ["--data-root", spec.data_root]
        for s in spec.overrides() + [f"_run_id={spec.run_id}",
                                     f"_progress_file={os.path.join(self.progress_dir, spec.run_id + '.json')}"]:
            cmd += ["--set", s]
        return cmd

    def start(self, spec: RunSpec, slot: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads),
                   PYTHONUNBUFFERED="1")
        log_path = os.path.join(self.log_dir, f"{spec.run_id}.log")
        log = open(log_path, "w")
        proc = subprocess.Popen(self.command(spec, slot), stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=os.getcwd())
        self.procs[slot] = (proc, spec, log, log_path)

    def poll(self) -> list[Outcome]:
        done = []
        for slot, (proc, spec, log, log_path) in list(self.procs.items()):
            if proc.poll() is None:
                continue
            log.close()
            del self.procs[slot]
            if proc.returncode == 0:
                done.append(Outcome(spec, True))
            else:
                with open(log_path, errors="replace") as fd:
                    tail = _error_tail(fd.read())
                done.append(Outcome(spec, False, f"exit code {proc.returncode}: {tail} (log: {log_path})"))
        return done

    def running(self) -> int:
        return len(self.procs)

    def cancel(self) -> None:
        for proc, _, log, _ in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.time() + 10
        for proc, _, log, _ in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        self.procs.clear()


def execute_spec(spec_dict: dict, gpu: int = -1, progress_file: str | None = None) -> dict:
    """Run one spec where it lands (a Ray worker) and return its record; the driver appends it."""
    from .runner import run_experiment

    spec = RunSpec.from_dict(spec_dict)
    params = spec.load()
    params["gpu"], params["verbose"] = gpu, 0
    if progress_file:
        params["_progress_file"] = progress_file
    return run_experiment(params, None, quiet=True, resume=True)


class RayExecutor:
    """Ray tasks with ``num_gpus`` each (Ray sets CUDA_VISIBLE_DEVICES, so the task trains on GPU 0)."""

    appends_records = False

    def __init__(self, address: str, jobs: int | None = None, gpus_per_run: float = 1.0, cpus_per_run: float = 1.0,
                 progress_dir: str | None = None, ray_module=None):
        if ray_module is None:
            try:
                import ray as ray_module
            except ImportError:
                raise CTRBenchError("--ray-address needs ray (pip install 'ray[default]')")
        self.ray = ray_module
        self.ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        self.gpus_per_run = gpus_per_run
        self.progress_dir = progress_dir
        if jobs is None:
            resources = self.ray.cluster_resources()
            key, per = ("GPU", gpus_per_run) if gpus_per_run else ("CPU", cpus_per_run)
            jobs = max(1, int(resources.get(key, 1) // max(per, 1e-9)))
        self.slots = max(1, jobs)
        self.task = self.ray.remote(num_gpus=gpus_per_run, num_cpus=cpus_per_run, max_retries=0)(execute_spec)
        self.refs: dict = {}

    def start(self, spec: RunSpec, slot: int) -> None:
        progress = os.path.join(self.progress_dir, f"{spec.run_id}.json") if self.progress_dir else None
        ref = self.task.remote(spec.to_dict(), 0 if self.gpus_per_run else -1, progress)
        self.refs[ref] = spec

    def poll(self) -> list[Outcome]:
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
        done = []
        for ref in ready:
            spec = self.refs.pop(ref)
            try:
                done.append(Outcome(spec, True, record=self.ray.get(ref)))
            except Exception as exc:
                done.append(Outcome(spec, False, _error_tail(f"{exc.__class__.__name__}: {exc}", 2)))
        return done

    def running(self) -> int:
        return len(self.refs)

    def cancel(self) -> None:
        for ref in list(self.refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:
                pass
        self.refs.clear()


# ---- the sweep loop -----------------------------------------------------------------------------

@dataclass
class Entry:
    spec: RunSpec
    status: str = "queued"          # queued | running | done | failed | skipped
    slot: int | None = None
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    error: str | None = None
    metrics: dict | None = None


@dataclass
class SweepResult:
    ran: list = field(default_factory=list)       # run labels completed in this invocation
    skipped: list = field(default_factory=list)   # already in the records
    failed: list = field(default_factory=list)    # (label, error)

    @property
    def ok(self) -> bool:
        return not self.failed


class Sweep:
    """Queue of runs over an executor's slots, with the ledger, the records check and the live view."""

    def __init__(self, specs: list[RunSpec], results: str, executor, retries: int = 1,
                 console: Console | None = None, state_dir: str | None = None, live: bool | None = None,
                 poll_seconds: float = 0.5):
        self.specs = specs
        self.results = results
        self.executor = executor
        self.retries = max(0, int(retries))
        self.console = console or Console(stderr=True)
        self.state_dir = state_dir or sweep_dir(results)
        self.ledger = Ledger(os.path.join(self.state_dir, "ledger.jsonl"))
        self.progress_dir = os.path.join(self.state_dir, "progress")
        self.live = self.console.is_terminal if live is None else live
        self.poll_seconds = poll_seconds
        self.entries = [Entry(s) for s in specs]
        self.started_at = time.time()

    # -- view --
    def _progress(self, entry: Entry) -> dict:
        try:
            with open(os.path.join(self.progress_dir, f"{entry.spec.run_id}.json")) as fd:
                return json.load(fd)
        except (OSError, ValueError):
            return {}

    def table(self) -> Table:
        counts = {s: sum(e.status == s for e in self.entries) for s in ("queued", "running", "done", "failed", "skipped")}
        durations = [e.finished - e.started for e in self.entries if e.status == "done" and e.started and e.finished]
        remaining = counts["queued"] + counts["running"]
        eta = (sum(durations) / len(durations)) * remaining / max(self.executor.slots, 1) if durations else None
        title = (f"sweep: {counts['done']} done, {counts['running']} running, {counts['queued']} queued, "
                 f"{counts['failed']} failed, {counts['skipped']} already done"
                 + (f"  ETA {_duration(eta)}" if eta is not None and remaining else ""))
        table = Table(title=title, title_justify="left", expand=False)
        for col, justify in (("run", "left"), ("slot", "right"), ("status", "left"), ("epoch", "right"),
                             ("progress", "right"), ("val AUC", "right"), ("best", "right"),
                             ("test AUC", "right"), ("samples/s", "right"), ("elapsed", "right"), ("ETA", "right")):
            table.add_column(col, justify=justify)
        shown = [e for e in self.entries if e.status == "running"]
        shown += [e for e in self.entries if e.status in ("done", "failed")][-5:]
        shown += [e for e in self.entries if e.status == "queued"][:3]
        for e in shown:
            p = self._progress(e) if e.status in ("running", "done") else {}
            auc = (p.get("valid") or {}).get("AUC")
            best = p.get("best")
            test_auc = (e.metrics or {}).get("AUC") if e.status == "done" else None
            elapsed = (e.finished or time.time()) - e.started if e.started else None
            style = {"done": "green", "failed": "red", "running": "bold"}.get(e.status, "dim")
            table.add_row(
                e.spec.label, "" if e.slot is None else str(e.slot), Text(e.status, style=style),
                f"{p['epoch']}/{p['epochs']}" if p.get("epochs") else "",
                f"{100 * p.get('fraction', 0):.0f}%" if p else "",
                f"{auc:.4f}" if isinstance(auc, (int, float)) else "",
                f"{best:.4f}" if isinstance(best, (int, float)) else "",
                f"{test_auc:.4f}" if isinstance(test_auc, (int, float)) else "",
                f"{p['samples_per_second']:,.0f}" if p.get("samples_per_second") else "",
                _duration(elapsed), _duration(p.get("eta")) if p.get("eta") and e.status == "running" else "")
        return table

    def __rich__(self):
        failed = [e for e in self.entries if e.status == "failed" and e.error]
        if not failed:
            return self.table()
        return Group(self.table(), *[Text(f"{e.spec.label}: {e.error}", style="red") for e in failed[-3:]])

    def _say(self, text: str) -> None:
        if not self.live:
            self.console.print(text, highlight=False, soft_wrap=True)

    # -- loop --
    def run(self) -> SweepResult:
        os.makedirs(self.progress_dir, exist_ok=True)
        result = SweepResult()
        finished = finished_hashes(self.results)
        for e in self.entries:
            if e.spec.config_hash in finished:
                e.status = "skipped"
                result.skipped.append(e.spec.label)
        pending = [e for e in self.entries if e.status == "queued"]
        for e in pending:
            self.ledger.event(e.spec, "queued")
        self._say(f"sweep: {len(self.entries)} runs, {len(result.skipped)} already done, {len(pending)} to run "
                  f"on {self.executor.slots} slot(s)")
        free = list(range(self.executor.slots))
        ctx = Live(self, console=self.console, refresh_per_second=2, transient=False) if self.live \
            else _nullcontext()
        try:
            with ctx:
                while pending or self.executor.running():
                    while pending and free:
                        e = pending.pop(0)
                        e.slot, e.status, e.started, e.attempts = free.pop(0), "running", time.time(), e.attempts + 1
                        self.ledger.event(e.spec, "started", slot=e.slot, attempt=e.attempts)
                        self._say(f"start  {e.spec.label} (slot {e.slot})")
                        self.executor.start(e.spec, e.slot)
                    for outcome in self.executor.poll():
                        self._finish(outcome, pending, free, result)
                    if self.executor.running():
                        time.sleep(self.poll_seconds)
        except KeyboardInterrupt:
            self.executor.cancel()
            for e in self.entries:
                if e.status == "running":
                    e.status = "queued"
                    self.ledger.event(e.spec, "interrupted")
            raise
        return result

    def _finish(self, outcome: Outcome, pending: list, free: list, result: SweepResult) -> None:
        entry = next(e for e in self.entries if e.spec is outcome.spec)
        entry.finished = time.time()
        free.append(entry.slot)
        free.sort()
        ok, error = outcome.ok, outcome.error
        if ok and outcome.record is not None and not self.executor.appends_records:
            append_record(self.results, outcome.record)
        if ok and outcome.spec.config_hash not in finished_hashes(self.results):
            ok, error = False, "the run ended without a record in " + self.results
        if ok:
            entry.status = "done"
            entry.metrics = (outcome.record or {}).get("test") or self._record_metrics(entry.spec)
            self.ledger.event(entry.spec, "done", seconds=round(entry.finished - entry.started, 3))
            result.ran.append(entry.spec.label)
            auc = (entry.metrics or {}).get("AUC")
            self._say(f"done   {entry.spec.label}" + (f" test AUC {auc:.6f}" if auc is not None else ""))
            return
        entry.error = error
        self.ledger.event(entry.spec, "failed", error=error, attempt=entry.attempts)
        if entry.attempts <= self.retries:
            entry.status = "queued"
            pending.append(entry)
            self._say(f"failed {entry.spec.label} (retrying): {error}")
        else:
            entry.status = "failed"
            result.failed.append((entry.spec.label, error))
            self._say(f"failed {entry.spec.label}: {error}")

    def _record_metrics(self, spec: RunSpec) -> dict | None:
        for rec in reversed(read_records(self.results)):
            if rec.get("config_hash") == spec.config_hash:
                return rec.get("test")
        return None


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _duration(seconds) -> str:
    if seconds is None:
        return ""
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def sweep_dir(results: str) -> str:
    """``results/runs.jsonl`` -> ``results/runs.sweep/`` (ledger, logs, progress)."""
    stem, _ = os.path.splitext(os.path.abspath(results))
    return stem + ".sweep"


def make_executor(results: str, jobs: int | None, gpus: list[int] | None, ray_address: str | None = None,
                  ray_gpus: float = 1.0, isolate: bool = False, state_dir: str | None = None):
    state_dir = state_dir or sweep_dir(results)
    progress_dir = os.path.join(state_dir, "progress")
    log_dir = os.path.join(state_dir, "logs")
    for d in (progress_dir, log_dir):
        os.makedirs(d, exist_ok=True)
    if ray_address:
        return RayExecutor(ray_address, jobs, ray_gpus, 1.0, progress_dir)
    jobs = jobs or (len(gpus) if gpus else 1)
    if jobs == 1 and len(gpus or []) <= 1 and not isolate:
        return InProcessExecutor(results, progress_dir, log_dir, gpus[0] if gpus else -1)
    return SubprocessExecutor(results, jobs, gpus, log_dir, progress_dir)
