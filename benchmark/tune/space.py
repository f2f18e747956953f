"""The search space: parameters from a space YAML or a FuxiCTR tuner file, and each trial's run spec."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field

from .. import config as config_mod
from .. import sweep as sweep_mod
from ..errors import CTRBenchError

log = logging.getLogger("ctrbench")

_RANGE_KEYS = {"low", "high", "log", "step"}


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
