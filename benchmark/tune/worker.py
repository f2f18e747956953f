"""The worker: each trial an ordinary run with a pruning callback, records reused, one lock per config."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import traceback
import warnings

from rich.console import Console

from ..errors import CTRBenchError
from ..records import find_recorded, read_records
from ..tracking import require
from .space import Space, load_space
from .study import (
    HOST,
    TuneConfig,
    counts,
    crashed_points,
    finished_points,
    monitor_value,
    open_study,
    recover_dead_trials,
    retry_trial,
)

log = logging.getLogger("ctrbench")


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
    from ..runner import run_paths

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
    from ..runner import run_paths

    paths = run_paths(params)
    for path in (paths.state, paths.checkpoint):
        if os.path.isfile(path):
            os.remove(path)


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
        from ..runner import run_paths

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
            record = find_recorded(read_records(self.cfg.results), spec.config_hash)
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
        from ..runner import RunOptions, run

        optuna = require("optuna", "ctrbench tune")
        try:
            options = RunOptions(
                results=self.cfg.results,
                resume=True,
                quiet=True,
                console=self.console,
                callbacks=[PruningCallback(trial, params)],
            )
            return run(params, options).record
        except optuna.TrialPruned:
            _remove_run_files(params)
            raise
        except (CTRBenchError, KeyboardInterrupt):
            raise
        except Exception as exc:  # one crashed run (e.g. a diverging config) fails its trial only
            from ..runner import run_paths

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
        done = finished_points(study, self.cfg.sampler == "grid")
        self.console.print(
            f"trial {frozen.number} {state} {what}  [{values}]  ({done}/{self.cfg.trials} finished)",
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
                grid = self.cfg.sampler == "grid"
                done = finished_points(study, grid) + (crashed_points(study) if grid else 0)
                if done >= self.cfg.trials:
                    break
                if done + c["RUNNING"] >= self.cfg.trials and not c["WAITING"]:
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
                            retry_trial(study, t)
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
