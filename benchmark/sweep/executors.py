"""Where a sweep's runs execute: in this process, in subprocesses (``--jobs``/``--gpus``) or as Ray tasks
(``--ray-address``); each reports ``Outcome``s to the sweep loop (see ``benchmark/sweep/__init__.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass

from ..errors import USER_ERRORS, CTRBenchError
from .expand import RunSpec
from .ledger import sweep_dir

# ---- executors ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    spec: RunSpec
    ok: bool
    error: str | None = None
    record: dict | None = None


def _error_tail(text: str, lines: int = 3) -> str:
    picked = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in picked if "error" in line.lower()]
    return " | ".join((errors or picked)[-lines:])[-500:]


class InProcessExecutor:
    """Runs one spec at a time inside this process (no start-up cost per run)."""

    slots = 1
    appends_records = True

    def __init__(
        self, results: str, progress_dir: str | None = None, log_dir: str | None = None, gpu: int = -1
    ):
        self.results, self.progress_dir, self.log_dir, self.gpu = results, progress_dir, log_dir, gpu
        self._done: list[Outcome] = []

    def start(self, spec: RunSpec, slot: int) -> None:
        from ..runner import RunOptions, run

        try:
            params = spec.load()
            params["verbose"], params["gpu"] = 0, self.gpu
            progress = os.path.join(self.progress_dir, f"{spec.run_id}.json") if self.progress_dir else None
            options = RunOptions(results=self.results, resume=True, quiet=True, progress_file=progress)
            record = run(params, options).record
            self._done.append(Outcome(spec, True, record=record))
        except USER_ERRORS as exc:  # the config's or the model's own check
            self._done.append(Outcome(spec, False, str(exc)))
        except Exception as exc:  # a crash of one run must not end the sweep
            error = f"{exc.__class__.__name__}: {exc}"
            if self.log_dir:
                path = os.path.join(self.log_dir, f"{spec.run_id}.log")
                with open(path, "a") as fd:
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

    def __init__(
        self,
        results: str,
        jobs: int,
        gpus: list[int] | None,
        log_dir: str,
        progress_dir: str,
        threads: int | None = None,
        python: str = sys.executable,
    ):
        self.results, self.slots, self.gpus = results, max(1, jobs), list(gpus or [])
        self.log_dir, self.progress_dir, self.python = log_dir, progress_dir, python
        cpus = os.cpu_count() or 1
        self.threads = threads or (1 if not self.gpus else max(1, cpus // self.slots))
        self.procs: dict[int, tuple] = {}

    def command(self, spec: RunSpec, slot: int) -> list[str]:
        cmd = [
            self.python,
            "-m",
            "benchmark",
            "run",
            "--config",
            spec.config_dir,
            "--expid",
            spec.expid,
            "--results",
            self.results,
            "--resume",
            "--gpu",
            str(self.gpus[slot % len(self.gpus)] if self.gpus else -1),
        ]
        if spec.data_root:
            cmd += ["--data-root", spec.data_root]
        for s in spec.overrides():
            cmd += ["--set", s]
        return cmd + ["--progress-file", os.path.join(self.progress_dir, spec.run_id + ".json")]

    def start(self, spec: RunSpec, slot: int) -> None:
        env = dict(
            os.environ,
            OMP_NUM_THREADS=str(self.threads),
            MKL_NUM_THREADS=str(self.threads),
            PYTHONUNBUFFERED="1",
        )
        log_path = os.path.join(self.log_dir, f"{spec.run_id}.log")
        log = open(log_path, "a")  # a retried or resumed run adds to the output of its earlier attempts
        proc = subprocess.Popen(
            self.command(spec, slot), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=os.getcwd()
        )
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
    from ..runner import RunOptions, run

    spec = RunSpec.from_dict(spec_dict)
    params = spec.load()
    params["gpu"], params["verbose"] = gpu, 0
    return run(params, RunOptions(resume=True, quiet=True, progress_file=progress_file)).record


class RayExecutor:
    """Ray tasks with ``num_gpus`` each (Ray sets CUDA_VISIBLE_DEVICES, so the task trains on GPU 0).
    ``address``: a cluster (``auto`` = the running local one, ``ray://host:port``) or ``local`` (start a
    Ray instance in this process for the sweep)."""

    appends_records = False

    def __init__(
        self,
        address: str,
        jobs: int | None = None,
        gpus_per_run: float = 1.0,
        cpus_per_run: float = 1.0,
        progress_dir: str | None = None,
        ray_module=None,
    ):
        if ray_module is None:
            try:
                import ray as ray_module
            except ImportError:
                raise CTRBenchError("--ray-address needs ray (pip install 'ray[default]')")
        self.ray = ray_module
        local = address == "local"
        try:
            self.ray.init(address=None if local else address, ignore_reinit_error=True, log_to_driver=False)
        except ConnectionError as exc:
            raise CTRBenchError(
                f"--ray-address {address}: no Ray cluster answers there "
                f"({str(exc).splitlines()[0][:120]}); start one with 'ray start --head' "
                f"(then --ray-address auto), or pass --ray-address local to start a local "
                f"one for this sweep"
            )
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


def make_executor(
    results: str,
    jobs: int | None,
    gpus: list[int] | None,
    ray_address: str | None = None,
    ray_gpus: float = 1.0,
    isolate: bool = False,
    state_dir: str | None = None,
):
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
