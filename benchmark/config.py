"""FuxiCTR-style YAML configs: ``Base`` + expid merge, ``dataset_id`` lookup, typing and paths.

Layout (as in FuxiCTR): ``<config>/model_config.yaml`` or ``<config>/model_config/*.yaml`` and
``<config>/dataset_config.yaml`` or ``<config>/dataset_config/*.yaml``. The ``Base`` section is merged
under the expid; the expid's ``dataset_id`` selects a section of the dataset config, whose keys are
merged on top (FuxiCTR's order); ``--set key=value`` overrides apply last, with YAML typing.

Fixes over ``fuxictr.utils.load_config``: numeric strings such as ``1e-3`` (a string for PyYAML) become
numbers, an unknown expid or dataset_id is a clear error with the closest match, malformed YAML names
the file and line, relative data paths resolve against a fixed folder instead of the current
directory (``resolve_dataset_paths``: a FuxiCTR experiment folder runs unchanged, ctrbench's own
config from anywhere), and every hyperparameter is checked against one table of rules (``RULES``)
plus the model's own ``check_params``, naming key, value, expid and where the value came from.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

import yaml

from model_zoo.options import closest

from .errors import CTRBenchError
from .keys import NOTES_KEY, check_keys

# A YAML 1.1 loader reads "1e-3" as a string; anything matching this becomes a number.
_NUMBER = re.compile(r"^[+-]?((\d+(\.\d*)?)|(\.\d+))([eE][+-]?\d+)?$")
# Subtrees whose string values are data, not hyper-parameters (e.g. fill_na: "0" must stay a string).
_NO_COERCE = {"feature_cols", "label_col", "feature_specs"}
# Keys of a dataset config holding paths.
PATH_KEYS = ("train_data", "valid_data", "test_data")

# Keys every run needs; BaseModel raises a bare KeyError without verbose/model_root/metrics.
DEFAULTS: dict[str, Any] = {
    "model_root": "./checkpoints/",
    "verbose": 1,
    "metrics": ["logloss", "AUC"],
    "logloss_eps": None,  # no clipping, as fuxictr 2.3.10 (ctrbench's Base sets the papers' 1e-7)
    "task": "binary_classification",
    "optimizer": "adam",
    "loss": "binary_crossentropy",
    "learning_rate": 1.0e-3,
    "embedding_regularizer": 0,
    "net_regularizer": 0,
    "batch_size": 10000,
    "eval_batch_size": None,
    "epochs": 100,
    "shuffle": True,
    "seed": 2023,
    "monitor": "AUC",
    "monitor_mode": "max",
    "early_stop_patience": 2,
    "reduce_lr_on_plateau": True,
    "max_gradient_norm": 10.0,
    "eval_steps": None,
    "gpu": -1,
    "streaming": False,
    "data_block_size": 0,
    "min_categr_count": 1,
    "data_format": "csv",
    "group_id": None,
    "use_features": None,
    "feature_specs": None,
}


def coerce_numbers(value: Any, key: str | None = None) -> Any:
    """Turn numeric-looking strings into int/float, recursively (not inside data specs)."""
    if key in _NO_COERCE:
        return value
    if isinstance(value, dict):
        return {k: coerce_numbers(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [coerce_numbers(v) for v in value]
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        text = value.strip()
        if re.match(r"^[+-]?\d+$", text):
            return int(text)
        return float(text)
    return value


_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it: same results
_MERGE_TAG = "tag:yaml.org,2002:merge"
_YAML_CACHE: dict = {}


def read_yaml(path: str) -> dict:
    """Read one YAML file; a syntax error names the file and line, a key given twice in one mapping
    names both lines.

    Parsed files are kept per (path, size, mtime): resolving an expid reads every config file, and a
    table of a hundred cells would otherwise parse the whole config folder a hundred times.
    """
    return copy.deepcopy(_parsed(path)[0])


def yaml_line(path: str, keys: tuple) -> int | None:
    """The 1-based line of a key of a YAML file, by its path of keys (e.g. ``(expid, "maskfusion",
    "smooth_l0")``); the line of the nearest enclosing key when the key itself is not in the file."""
    try:
        lines = _parsed(path)[1]
    except CTRBenchError:
        return None
    keys = tuple(map(str, keys))
    while keys:
        if keys in lines:
            return lines[keys]
        keys = keys[:-1]
    return None


def _parsed(path: str) -> tuple[dict, dict]:
    try:
        st = os.stat(path)
        stamp = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None
    if stamp is not None and stamp in _YAML_CACHE:
        return _YAML_CACHE[stamp]
    parsed = _parse_yaml(path)
    if stamp is not None:
        _YAML_CACHE[stamp] = parsed
    return parsed


def _parse_yaml(path: str) -> tuple[dict, dict]:
    """(content, lines): ``lines`` maps each key's path of keys to its 1-based line."""
    lines: dict[tuple, int] = {}
    try:
        with open(path, "r", encoding="utf-8") as fd:
            loader = _SafeLoader(fd)
            try:
                node = loader.get_single_node()
                if node is not None:
                    _key_lines(node, (), lines, path, set())
                content = loader.construct_document(node) if node is not None else None
            finally:
                loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = exc.problem or exc.context or "syntax error"
        raise CTRBenchError(f"malformed YAML in {where}: {problem}; fix the syntax at that line")
    except OSError as exc:
        raise CTRBenchError(f"cannot read {path}: {exc.strerror}")
    if content is None:
        return {}, lines
    if not isinstance(content, dict):
        raise CTRBenchError(
            f"{path} must hold a mapping of section names to settings, found {type(content).__name__}"
        )
    return content, lines


def _key_lines(node, path: tuple, lines: dict, file: str, active: set) -> None:
    """Record the line of every key under ``node``; a key given twice in one mapping is an error.

    Keys merged in with ``<<: *anchor`` may be given again beside the merge (that overrides them, as
    YAML says); they take the anchor's lines where the mapping does not give them itself."""
    if id(node) in active:  # a recursive alias
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        merged = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged += value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            name, line = key_node.value, key_node.start_mark.line + 1
            if name in seen:
                inside = f" in '{'.'.join(map(str, path))}'" if path else ""
                raise CTRBenchError(
                    f"{file}:{seen[name]} and {file}:{line} both give key '{name}'{inside} (one YAML "
                    f"mapping, so the second would silently replace the first); keep one of them"
                )
            seen[name] = line
            lines[path + (name,)] = line
            _key_lines(value_node, path + (name,), lines, file, active)
        for source in merged:
            if isinstance(source, yaml.MappingNode):
                for key_node, value_node in source.value:
                    plain = isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG
                    name = key_node.value if plain else None
                    if name is not None and name not in seen:
                        lines.setdefault(path + (name,), key_node.start_mark.line + 1)
                        _key_lines(value_node, path + (name,), lines, file, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _key_lines(item, path + (str(i),), lines, file, active)
    active.discard(id(node))


def _config_files(config_dir: str, kind: str) -> list[str]:
    single = os.path.join(config_dir, f"{kind}.yaml")
    files = sorted(glob.glob(os.path.join(config_dir, kind, "*.yaml")))
    if os.path.isfile(single):
        files = [single] + files
    if not files:
        raise CTRBenchError(
            f"no {kind}.yaml or {kind}/*.yaml under {config_dir}; "
            f"pass --config pointing at a FuxiCTR-style config directory"
        )
    return files


def load_sections(config_dir: str, kind: str) -> dict[str, tuple[dict, str]]:
    """All sections of one config kind: name -> (settings, file). Duplicates are an error."""
    sections: dict[str, tuple[dict, str]] = {}
    for path in _config_files(config_dir, kind):
        for name, body in read_yaml(path).items():
            name = str(name)
            if name.startswith("_"):
                continue  # a template section (YAML anchor source), not an expid or dataset
            if name in sections and name != "Base":
                raise CTRBenchError(
                    f"section '{name}' is defined twice: in {sections[name][1]} "
                    f"and {path}; rename one of them"
                )
            if body is None:
                body = {}
            if not isinstance(body, dict):
                raise CTRBenchError(f"section '{name}' in {path} must be a mapping of settings")
            if name == "Base" and name in sections:
                merged = dict(sections[name][0])
                merged.update(body)
                body = merged
            sections[name] = (body, path)
    return sections


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs with YAML typing; dotted keys address nested mappings."""
    overrides: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise CTRBenchError(f"--set '{item}' must look like key=value (e.g. --set learning_rate=1e-3)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise CTRBenchError(f"--set '{item}' has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise CTRBenchError(f"--set {key}: cannot read '{raw}' as a YAML value; quote it")
        overrides[key] = coerce_numbers(value, key.split(".")[-1])
    return overrides


def apply_overrides(params: dict, overrides: dict[str, Any]) -> dict:
    for key, value in overrides.items():
        target = params
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[parts[-1]] = value
    return params


# The configs a non-editable install carries (setup.py copies config/ there); a source checkout and an
# editable install read config/ itself.
PACKAGED_CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_config")


def is_packaged_config(path: str) -> bool:
    """Whether ``path`` lies in the installed package's configs. Their relative paths resolve as if they
    were ``./config`` (``../data/`` is ``./data/``): site-packages is no place for data."""
    here = os.path.realpath(PACKAGED_CONFIG_DIR)
    return os.path.commonpath([os.path.realpath(path), here]) == here


def resolve_dataset_paths(dataset: dict, yaml_dir: str, data_root: str | None) -> dict:
    """Resolve ``data_root``, ``build_root`` and the split paths of one dataset section.

    ``yaml_dir`` is the folder holding the YAML file that defines the section. The rule (README,
    "Configs"):

    - A relative ``data_root`` or ``build_root`` resolves against the folder above ``yaml_dir``: the
      experiment folder for FuxiCTR's ``X/config/dataset_config.yaml`` (where FuxiCTR's run_expid.py
      runs), ``config/`` for ctrbench's ``config/dataset_config/<name>.yaml``, the folder above a tuner
      file for its inline ``dataset_config``; never the working directory. ``--data-root`` replaces
      ``data_root`` (a relative one resolves against the working directory).
    - A relative split path (``train_data`` ...) that starts with the configured ``data_root``
      (FuxiCTR's ``../../../data/Frappe_x1_h5/train.h5``) is that path: it is not joined onto data_root
      again, and moves with ``--data-root``. Any other relative split path is joined onto data_root,
      unless only the same path taken from the folder above ``yaml_dir`` exists.
    - Built data goes to ``<build_root>/<dataset_id>/``; build_root defaults to data_root, or to
      ``<data_root>/built`` when the raw splits are kept in ``<data_root>/<dataset_id>/`` (FuxiCTR's
      layout, whose builds fuxictr writes beside the csv files).
    - A path given with ``--set`` (``train_data=...``) is typed on the command line: it resolves
      against the working directory (``load_config``).
    """
    dataset = dict(dataset)
    base = os.path.dirname(os.path.abspath(yaml_dir))
    if is_packaged_config(yaml_dir):  # an installed package's configs stand in for ./config
        base = os.path.join(os.getcwd(), "config")
    configured_root = str(dataset.get("data_root", "../data/"))
    root = data_root if data_root else configured_root
    if not os.path.isabs(root):
        root = os.path.join(base if not data_root else os.getcwd(), root)
    root = os.path.normpath(root)
    prefix = os.path.normpath(configured_root)
    for key in PATH_KEYS:
        path = dataset.get(key)
        if not path or os.path.isabs(str(path)):
            continue
        norm = os.path.normpath(str(path))
        if norm.startswith(prefix + os.sep):
            resolved = os.path.join(root, norm[len(prefix) + 1 :])
        else:
            resolved = os.path.join(root, norm)
            beside = os.path.join(base, norm)
            if not os.path.exists(resolved) and os.path.exists(beside):
                resolved = beside
        dataset[key] = os.path.normpath(resolved)
    build_root = dataset.get("build_root")
    if build_root is None:
        build_root = root
        dataset["_build_root_default"] = True  # data.build.data_dir moves it off raw files kept there
    elif not os.path.isabs(str(build_root)):
        build_root = os.path.normpath(os.path.join(base, str(build_root)))
    dataset["data_root"] = root
    dataset["build_root"] = build_root
    dataset["_paths_base"] = base
    return dataset


def load_dataset_config(config_dir: str, dataset_id: str, data_root: str | None = None) -> dict:
    sections = load_sections(config_dir, "dataset_config")
    if dataset_id not in sections:
        raise CTRBenchError(
            f"unknown dataset_id '{dataset_id}'{closest(dataset_id, sections)}: "
            f"add a '{dataset_id}:' section to {config_dir}/dataset_config/ "
            f"or run 'ctrbench data list'"
        )
    body, path = sections[dataset_id]
    dataset = coerce_numbers(copy.deepcopy(body))
    dataset["dataset_id"] = dataset_id
    dataset["_dataset_config_file"] = path
    return resolve_dataset_paths(dataset, os.path.dirname(os.path.abspath(path)), data_root)


def load_config(
    config_dir: str,
    expid: str,
    overrides: list[str] | None = None,
    data_root: str | None = None,
    overrides_from: str = "--set",
) -> dict:
    """Resolved parameters of one experiment: defaults < Base < expid < dataset < --set.

    Every key must be read by something (``keys.check_keys``), then every value is checked
    (``validate_params``); errors name the key and where it came from: ``file:line``, or
    ``overrides_from`` (``--set``, or e.g. the targets file whose cell passed the overrides).
    """
    config_dir = os.path.abspath(config_dir)
    if not os.path.isdir(config_dir):
        raise CTRBenchError(f"config directory {config_dir} does not exist; pass --config DIR")
    sections = load_sections(config_dir, "model_config")
    if expid not in sections or expid == "Base":
        raise CTRBenchError(
            f"unknown expid '{expid}'{closest(expid, [s for s in sections if s != 'Base'])}; "
            f"expids live in {config_dir}/model_config/ (list them with 'ctrbench expids')"
        )
    set_values = parse_set(overrides)
    params = copy.deepcopy(DEFAULTS)
    params.update(coerce_numbers(copy.deepcopy(sections.get("Base", ({}, ""))[0])))
    body, model_file = sections[expid]
    params.update(coerce_numbers(copy.deepcopy(body)))
    apply_overrides(params, set_values)  # first pass: --set dataset_id=... selects another dataset
    if "model" not in params:
        raise CTRBenchError(
            f"expid '{expid}' in {model_file} has no 'model' key; "
            f"set it to a registered model (see 'ctrbench models')"
        )
    if not params.get("dataset_id"):
        raise CTRBenchError(
            f"expid '{expid}' in {model_file} has no 'dataset_id'; add one or pass --set dataset_id=ID"
        )
    dataset = load_dataset_config(config_dir, str(params["dataset_id"]), data_root)
    params.update(dataset)
    apply_overrides(params, set_values)  # second pass: --set wins over dataset keys too
    for key in (*PATH_KEYS, "data_root", "build_root"):  # typed on the command line: from the working dir
        if key in set_values and isinstance(params.get(key), str) and not os.path.isabs(params[key]):
            params[key] = os.path.abspath(params[key])
    params["model_id"] = expid
    params["expid"] = expid
    params["config_dir"] = config_dir
    params["_model_config_file"] = model_file
    model_root = str(params["model_root"])
    if not os.path.isabs(model_root):
        params["model_root"] = os.path.normpath(os.path.join(os.getcwd(), model_root))
    origin: dict[str, Any] = {key: "ctrbench's defaults" for key in DEFAULTS}
    base_files = _config_files(config_dir, "model_config")
    for key in sections.get("Base", ({}, ""))[0]:  # Base may be spread over several files
        files = [f for f in base_files if yaml_line(f, ("Base", key)) is not None]
        origin[key] = (files[-1] if files else sections["Base"][1], "Base")
    origin.update({key: (model_file, expid) for key in body})
    origin.update({key: (dataset["_dataset_config_file"], dataset["dataset_id"]) for key in dataset})
    for item in overrides or []:
        key = item.split("=", 1)[0].strip()
        origin[key] = f"{overrides_from} {item}" if overrides_from == "--set" else f"{overrides_from}: {item}"
    model_cls = _model_class(params, origin)
    check_keys(params, lambda dotted: _source(origin, dotted), model_cls)
    validate_params(params, origin)
    return params


# ---- hyper-parameter checks -----------------------------------------------------------------------
# One table: each rule names the key (``*suffix`` matches every key ending so, at any depth of the
# settings outside the data specs), what the value must be, an example, and whether null/absent is
# allowed. ``validate_params`` applies them all, then the model class's own ``check_params`` hook.


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive_int(v, params) -> str | None:
    return None if _int(v) and v >= 1 else "must be an integer >= 1"


def _non_negative_int(v, params) -> str | None:
    return None if _int(v) and v >= 0 else "must be an integer >= 0"


def _positive_number(v, params) -> str | None:
    return None if _number(v) and v > 0 else "must be a number > 0"


def _dropout(v, params) -> str | None:
    values = v if isinstance(v, list) else [v]
    ok = values and all(_number(x) and 0 <= x < 1 for x in values)
    return None if ok else "must be a dropout rate in [0, 1) (or a list of them, one per layer)"


def _units(v, params) -> str | None:
    ok = isinstance(v, list) and all(_int(x) and x >= 1 for x in v)
    return None if ok else "must be a list of positive integers (layer widths; [] for no layer)"


def _metric_problem(names: list, params: dict, what: str) -> str | None:
    from .metrics import METRICS, is_metric, needs_group

    known = ", ".join(METRICS) + ", NDCG(k=N)"
    for name in names:
        if not is_metric(name):
            return (
                f"names {what} '{name}'{closest(str(name), METRICS)} that ctrbench does not compute; "
                f"choose among {known}"
            )
        if needs_group(name) and not params.get("group_id"):
            return f"asks for {name}, which averages over groups: set group_id to the column that groups rows"
    return None


def _metrics(v, params) -> str | None:
    if not isinstance(v, list) or not v:
        return "must be a non-empty list of metric names"
    return _metric_problem(v, params, "metric")


def _monitor(v, params) -> str | None:
    if isinstance(v, str):
        return _metric_problem([v], params, "metric")
    if isinstance(v, dict) and v and all(_number(w) for w in v.values()):
        return _metric_problem(list(v), params, "metric")
    return "must be a metric name or a mapping of metric names to weights (e.g. {AUC: 1, logloss: -1})"


def _choice(*choices):
    from model_zoo.options import choice_problem

    return lambda v, params: choice_problem(v, choices)


def _optimizer(v, params) -> str | None:
    from model_zoo.options import optimizer_problem  # the table the model builds its optimiser from

    return optimizer_problem(v)


def _loss(v, params) -> str | None:
    from model_zoo.layers.losses import LOSSES

    if isinstance(v, str) and v.lower() in LOSSES:
        return None
    return (
        f"is not a loss of the model zoo{closest(str(v).lower(), LOSSES)}; choose among {', '.join(LOSSES)}"
    )


def _logloss_eps(v, params) -> str | None:
    return None if _number(v) and 0 <= v < 0.5 else "must be a number in [0, 0.5) (0 or null: no clipping)"


def _seed(v, params) -> str | None:
    # numpy's global seed (fuxictr's seed_everything) takes 0 .. 2**32 - 1
    return None if _int(v) and 0 <= v < 2**32 else "must be an integer in 0 .. 4294967295 (2**32 - 1)"


def _save_best_only(v, params) -> str | None:
    # fuxictr's False saves every evaluation and ends on the last weights; ctrbench's trainer always
    # keeps and reloads the best checkpoint, so only True (FuxiCTR's default) describes a ctrbench run
    return None if v is True else "must be true: ctrbench always keeps and evaluates the best checkpoint"


@dataclass(frozen=True)
class Rule:
    key: str  # a key, or "*suffix" for every key ending in suffix
    check: Callable[[Any, dict], "str | None"]  # the problem with a value, None when it is fine
    example: str
    required: bool = False  # null/absent is an error (else it means "not used")

    def matches(self, key: str) -> bool:
        return key.endswith(self.key[1:]) if self.key.startswith("*") else key == self.key


RULES: tuple[Rule, ...] = (
    Rule("learning_rate", _positive_number, "1.0e-3", required=True),
    Rule("batch_size", _positive_int, "4096", required=True),
    Rule("eval_batch_size", _positive_int, "10000"),
    Rule("epochs", _positive_int, "100", required=True),
    Rule("seed", _seed, "2023", required=True),
    Rule("gpu", lambda v, p: None if _int(v) and v >= -1 else "must be a device index, or -1 for CPU", "-1"),
    Rule("*embedding_dim", _positive_int, "16"),
    Rule("*_dropout", _dropout, "0.1"),
    Rule("dropout", _dropout, "0.1"),
    Rule("*_units", _units, "[400, 400, 400]"),
    Rule("early_stop_patience", _positive_int, "2"),
    Rule("eval_steps", _positive_int, "1000"),
    Rule("max_gradient_norm", _positive_number, "10.0"),
    Rule("data_block_size", _non_negative_int, "0"),
    Rule("metrics", _metrics, "[logloss, AUC]", required=True),
    Rule("monitor", _monitor, "AUC", required=True),
    Rule("monitor_mode", _choice("max", "min"), "max", required=True),
    Rule("optimizer", _optimizer, "adam", required=True),
    Rule("loss", _loss, "binary_crossentropy", required=True),
    Rule("logloss_eps", _logloss_eps, "1.0e-7"),
    Rule("save_best_only", _save_best_only, "true"),
)


def _settings(params: dict, prefix: str = ""):
    """(dotted key, last key, value) of every setting, nested mappings included, data specs excluded."""
    for key, value in params.items():
        key = str(key)
        if key.startswith("_") or key in _NO_COERCE or (not prefix and key == NOTES_KEY):
            continue  # data specs (checked by the builder) and notes (read by nothing)
        yield prefix + key, key, value
        if isinstance(value, dict) and key != "monitor":
            yield from _settings(value, f"{prefix}{key}.")


def validate_params(params: dict, origin: dict[str, str] | None = None) -> None:
    """Check the resolved settings against ``RULES`` and the model's ``check_params`` hook.

    ``origin`` maps a key to where its value came from (``load_config``: a ``(file, section)`` pair,
    ``--set key=value``); the error names the key, the value, the expid and that place (``file:line``),
    and says what the value must be.
    """
    expid = params.get("expid", "?")
    origin = origin or {}

    def fail(key: str, value, problem: str, example: str | None = None) -> None:
        fix = f", e.g. {key.split('.')[-1]}: {example}" if example else ""
        raise CTRBenchError(f"{key}={value!r} (expid '{expid}', {_where(origin, key)}) {problem}{fix}")

    seen = set()
    for dotted, key, value in _settings(params):
        for rule in RULES:
            if not rule.matches(key):
                continue
            seen.add(rule.key)
            if value is None:
                if rule.required:
                    fail(dotted, value, "must be set", rule.example)
                continue
            problem = rule.check(value, params)
            if problem:
                fail(dotted, value, problem, rule.example)
    for rule in RULES:
        if rule.required and rule.key not in seen:
            fail(rule.key, None, "must be set", rule.example)
    _check_model_params(params, origin, fail)


def _check_model_params(params: dict, origin: dict, fail) -> None:
    """The model class (``model_zoo.get_model_class``) may check its own settings: a classmethod
    ``check_params(params)`` raising a ``ValueError`` (model_zoo's ``ModelConfigError``)."""
    expid, name = params.get("expid", "?"), str(params.get("model"))
    cls = _model_class(params, origin)
    hook = getattr(cls, "check_params", None)
    if not callable(hook):
        return
    try:
        hook(params)
    except ValueError as exc:
        key = getattr(exc, "key", None)
        if key:
            fail(str(key), _get(params, str(key)), f"is not valid for {name}: {exc}")
        raise CTRBenchError(f"expid '{expid}' ({name}): {exc}")


def _model_class(params: dict, origin: dict):
    """The registered class of ``params['model']``; an unknown name is an error naming where it was set."""
    import model_zoo

    expid, name = params.get("expid", "?"), str(params.get("model"))
    models = model_zoo.registry()
    if name not in models:
        raise CTRBenchError(
            f"model={name!r} (expid '{expid}', {_where(origin, 'model')}): unknown model "
            f"'{name}'{closest(name, models)}; registered models: {', '.join(models)}"
        )
    return models[name]


def _source(origin: dict, dotted: str) -> str:
    """Where a (dotted) key came from: ``file:line``, ``--set key=value`` or ctrbench's defaults.

    ``origin`` maps keys (dotted for ``--set a.b=1``) to a string or a ``(file, section)`` pair; the
    nearest enclosing key that has an entry decides, then a ``--set`` that created the key."""
    parts = dotted.split(".")
    hit = None
    for i in range(len(parts), 0, -1):
        hit = origin.get(".".join(parts[:i]))
        if hit is not None:
            break
    if hit is None:
        hit = next((v for k, v in origin.items() if str(k).startswith(dotted + ".")), None)
    if isinstance(hit, tuple):
        file, section = hit
        line = yaml_line(file, (section, *parts))
        return f"{file}:{line}" if line else file
    return hit or "resolved"


def _where(origin: dict, key: str) -> str:
    where = _source(origin, key)
    if where.startswith("--set"):
        return "set by --set"
    return "resolved" if where == "resolved" else f"from {where}"


def _get(params: dict, dotted: str):
    value = params
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def list_expids(config_dir: str) -> list[str]:
    return sorted(s for s in load_sections(os.path.abspath(config_dir), "model_config") if s != "Base")


def config_hash(
    params: dict,
    exclude=(
        "gpu",
        "verbose",
        "model_root",
        "config_dir",
        "_model_config_file",
        "_dataset_config_file",
        "data_root",
        "build_root",
        "train_data",
        "valid_data",
        "test_data",
    ),
) -> str:
    """Stable hash of the settings that define an experiment (not where it runs)."""
    public = {k: v for k, v in params.items() if k not in exclude and not k.startswith("_")}
    blob = json.dumps(public, sort_keys=True, default=str)
    return hashlib.md5(blob.encode()).hexdigest()[:12]
