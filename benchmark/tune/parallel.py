"""Trials in parallel: worker subprocesses on one study, or Ray tasks."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

from rich.console import Console

from .. import sweep as sweep_mod
from ..errors import CTRBenchError
from .study import TuneConfig, counts
from .worker import Worker

log = logging.getLogger("ctrbench")


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
