"""Tuning studies (``ctrbench tune``) for the board: best validation value so far against the number of
finished trials and against wall time, read from the studies' Optuna storage (read only).

A storage is a SQLite file (``results/tune/<study>.db``, what ``tune`` writes by default) or any
SQLAlchemy URL; every study in it is shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import CTRBenchError
from .data import slug


@dataclass
class Trial:
    number: int
    state: str  # COMPLETE | PRUNED | FAIL | RUNNING | WAITING
    value: float | None
    seconds: float | None  # from the study's first trial start to this trial's end
    params: dict


@dataclass
class Study:
    id: str
    name: str
    storage: str
    expid: str | None
    maximize: bool
    trials: list = field(default_factory=list)

    @property
    def finished(self) -> list:
        return [t for t in self.trials if t.state in ("COMPLETE", "PRUNED")]

    @property
    def complete(self) -> list:
        return [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]

    def best(self) -> Trial | None:
        pick = max if self.maximize else min
        return pick(self.complete, key=lambda t: t.value) if self.complete else None

    def best_so_far(self, by: str = "number") -> tuple[list, list]:
        """(x, best value so far): x the count of finished trials (``by='number'``, in trial order) or
        the wall-clock seconds since the study's first trial (``by='seconds'``, in completion order).
        Pruned trials count as trials but carry no value."""
        order = self.finished
        if by == "seconds":
            order = sorted((t for t in order if t.seconds is not None), key=lambda t: t.seconds)
        xs, ys, best = [], [], None
        for i, t in enumerate(order, 1):
            if t.state == "COMPLETE" and t.value is not None:
                better = best is None or (t.value > best if self.maximize else t.value < best)
                best = t.value if better else best
            if best is not None:
                xs.append(i if by == "number" else t.seconds)
                ys.append(best)
        return xs, ys


def storage_url(storage: str) -> str:
    """A SQLAlchemy URL for ``storage`` (a URL, or the path of an existing SQLite file)."""
    if "://" in storage:
        return storage
    if not os.path.isfile(storage):
        raise CTRBenchError(
            f"--tune-storage {storage}: no such file; give the study's SQLite file "
            f"(results/tune/<study>.db) or a SQLAlchemy URL"
        )
    return f"sqlite:///{os.path.abspath(storage)}"


def load_studies(storage: str) -> list[Study]:
    """Every study in ``storage``."""
    try:
        import optuna
    except ImportError:
        raise CTRBenchError("reading tuning studies needs optuna: pip install 'ctrbench[tune]'")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(storage)
    try:
        names = optuna.get_all_study_names(storage=url)
    except Exception as exc:  # SQLAlchemy's and Optuna's errors for a file that is not a study database
        raise CTRBenchError(f"--tune-storage {storage}: not an Optuna study storage ({type(exc).__name__})")
    studies = []
    for name in names:
        study = optuna.load_study(study_name=name, storage=url)
        trials = study.get_trials(deepcopy=False)
        starts = [t.datetime_start for t in trials if t.datetime_start is not None]
        origin = min(starts) if starts else None
        out = Study(
            id=f"study-{slug(name)}",
            name=name,
            storage=storage,
            expid=study.user_attrs.get("expid"),
            maximize=study.direction == optuna.study.StudyDirection.MAXIMIZE,
        )
        for t in sorted(trials, key=lambda t: t.number):
            end = t.datetime_complete
            out.trials.append(
                Trial(
                    number=t.number,
                    state=t.state.name,
                    value=t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
                    seconds=(end - origin).total_seconds() if end is not None and origin else None,
                    params=dict(t.params),
                )
            )
        studies.append(out)
    return studies


def find_storages(results_files: list[str]) -> list[str]:
    """SQLite study files in ``tune/`` beside each records file (``tune``'s default place)."""
    found = []
    for path in results_files:
        folder = os.path.join(os.path.dirname(os.path.abspath(path)), "tune")
        if os.path.isdir(folder):
            found += [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith(".db")]
    return list(dict.fromkeys(found))
