"""FuxiCTR-style YAML configs: ``Base`` + expid merge, ``dataset_id`` lookup, typing and paths.

Layout (as in FuxiCTR): ``<config>/model_config.yaml`` or ``<config>/model_config/*.yaml`` and
``<config>/dataset_config.yaml`` or ``<config>/dataset_config/*.yaml``. The ``Base`` section is merged
under the expid; the expid's ``dataset_id`` selects a section of the dataset config, whose keys are
merged on top (FuxiCTR's order); ``--set key=value`` overrides apply last, with YAML typing.

Fixes over ``fuxictr.utils.load_config``: numeric strings such as ``1e-3`` (a string for PyYAML) become
numbers, an unknown expid or dataset_id is a clear error with the closest match, malformed YAML names
the file and line, and relative data paths resolve against the config directory (or ``--data-root``)
instead of the current directory.
"""

from __future__ import annotations

import copy
import difflib
import glob
import hashlib
import json
import os
import re
from typing import Any

import yaml

from .errors import CTRBenchError

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
    "save_best_only": True,
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
_YAML_CACHE: dict = {}


def read_yaml(path: str) -> dict:
    """Read one YAML file; a syntax error names the file and line.

    Parsed files are kept per (path, size, mtime): resolving an expid reads every config file, and a
    table of a hundred cells would otherwise parse the whole config folder a hundred times.
    """
    try:
        st = os.stat(path)
        stamp = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None
    if stamp is not None and stamp in _YAML_CACHE:
        return copy.deepcopy(_YAML_CACHE[stamp])
    content = _parse_yaml(path)
    if stamp is not None:
        _YAML_CACHE[stamp] = copy.deepcopy(content)
    return content


def _parse_yaml(path: str) -> dict:
    try:
        with open(path, "r", encoding="utf-8") as fd:
            content = yaml.load(fd, Loader=_SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = exc.problem or exc.context or "syntax error"
        raise CTRBenchError(f"malformed YAML in {where}: {problem}; fix the syntax at that line")
    except OSError as exc:
        raise CTRBenchError(f"cannot read {path}: {exc.strerror}")
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise CTRBenchError(f"{path} must hold a mapping of section names to settings, "
                            f"found {type(content).__name__}")
    return content


def _config_files(config_dir: str, kind: str) -> list[str]:
    single = os.path.join(config_dir, f"{kind}.yaml")
    files = sorted(glob.glob(os.path.join(config_dir, kind, "*.yaml")))
    if os.path.isfile(single):
        files = [single] + files
    if not files:
        raise CTRBenchError(f"no {kind}.yaml or {kind}/*.yaml under {config_dir}; "
                            f"pass --config pointing at a FuxiCTR-style config directory")
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
                raise CTRBenchError(f"section '{name}' is defined twice: in {sections[name][1]} "
                                    f"and {path}; rename one of them")
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


def closest(name: str, candidates) -> str:
    """' (did you mean X?)' for the closest candidate, or ''."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


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


def resolve_dataset_paths(dataset: dict, config_dir: str, data_root: str | None) -> dict:
    """Resolve ``data_root``, ``build_root`` and the split paths.

    Relative ``data_root`` resolves against the config directory; ``--data-root`` replaces it.
    Relative split paths resolve against ``data_root``; a FuxiCTR-style path that repeats the
    configured data_root prefix (``../data/Criteo/Criteo_x1/train.csv``) is rebased the same way.
    Built data goes to ``<build_root>/<dataset_id>/`` where build_root defaults to data_root.
    """
    dataset = dict(dataset)
    configured_root = str(dataset.get("data_root", "../data/"))
    root = data_root if data_root else configured_root
    if not os.path.isabs(root):
        root = os.path.join(config_dir if not data_root else os.getcwd(), root)
    root = os.path.normpath(root)
    for key in PATH_KEYS:
        path = dataset.get(key)
        if not path or os.path.isabs(str(path)):
            continue
        path = str(path)
        prefix = os.path.normpath(configured_root)
        norm = os.path.normpath(path)
        if norm.startswith(prefix + os.sep):
            norm = norm[len(prefix) + 1:]
        dataset[key] = os.path.normpath(os.path.join(root, norm))
    build_root = dataset.get("build_root")
    if build_root is None:
        build_root = root
    elif not os.path.isabs(str(build_root)):
        build_root = os.path.normpath(os.path.join(config_dir, str(build_root)))
    dataset["data_root"] = root
    dataset["build_root"] = build_root
    return dataset


def load_dataset_config(config_dir: str, dataset_id: str, data_root: str | None = None) -> dict:
    sections = load_sections(config_dir, "dataset_config")
    if dataset_id not in sections:
        raise CTRBenchError(f"unknown dataset_id '{dataset_id}'{closest(dataset_id, sections)}: "
                            f"add a '{dataset_id}:' section to {config_dir}/dataset_config/ "
                            f"or run 'ctrbench data list'")
    body, path = sections[dataset_id]
    dataset = coerce_numbers(copy.deepcopy(body))
    dataset["dataset_id"] = dataset_id
    dataset["_dataset_config_file"] = path
    return resolve_dataset_paths(dataset, os.path.abspath(config_dir), data_root)


def load_config(config_dir: str, expid: str, overrides: list[str] | None = None,
                data_root: str | None = None) -> dict:
    """Resolved parameters of one experiment: defaults < Base < expid < dataset < --set."""
    config_dir = os.path.abspath(config_dir)
    if not os.path.isdir(config_dir):
        raise CTRBenchError(f"config directory {config_dir} does not exist; pass --config DIR")
    sections = load_sections(config_dir, "model_config")
    if expid not in sections or expid == "Base":
        raise CTRBenchError(f"unknown expid '{expid}'{closest(expid, [s for s in sections if s != 'Base'])}; "
                            f"expids live in {config_dir}/model_config/ (list them with 'ctrbench expids')")
    set_values = parse_set(overrides)
    params = copy.deepcopy(DEFAULTS)
    params.update(coerce_numbers(copy.deepcopy(sections.get("Base", ({}, ""))[0])))
    body, model_file = sections[expid]
    params.update(coerce_numbers(copy.deepcopy(body)))
    apply_overrides(params, set_values)  # first pass: --set dataset_id=... selects another dataset
    if "model" not in params:
        raise CTRBenchError(f"expid '{expid}' in {model_file} has no 'model' key; "
                            f"set it to a registered model (see 'ctrbench models')")
    if not params.get("dataset_id"):
        raise CTRBenchError(f"expid '{expid}' in {model_file} has no 'dataset_id'; "
                            f"add one or pass --set dataset_id=ID")
    dataset = load_dataset_config(config_dir, str(params["dataset_id"]), data_root)
    params.update(dataset)
    apply_overrides(params, set_values)  # second pass: --set wins over dataset keys too
    params["model_id"] = expid
    params["expid"] = expid
    params["config_dir"] = config_dir
    params["_model_config_file"] = model_file
    model_root = str(params["model_root"])
    if not os.path.isabs(model_root):
        params["model_root"] = os.path.normpath(os.path.join(os.getcwd(), model_root))
    for key in ("learning_rate", "batch_size", "epochs"):
        if not isinstance(params.get(key), (int, float)) or isinstance(params.get(key), bool):
            raise CTRBenchError(f"{key}={params.get(key)!r} in expid '{expid}' ({model_file}) "
                                f"must be a number")
    return params


def list_expids(config_dir: str) -> list[str]:
    return sorted(s for s in load_sections(os.path.abspath(config_dir), "model_config") if s != "Base")


def config_hash(params: dict, exclude=("gpu", "verbose", "model_root", "config_dir",
                                       "_model_config_file", "_dataset_config_file",
                                       "data_root", "build_root", "train_data", "valid_data",
                                       "test_data")) -> str:
    """Stable hash of the settings that define an experiment (not where it runs)."""
    public = {k: v for k, v in params.items() if k not in exclude and not k.startswith("_")}
    blob = json.dumps(public, sort_keys=True, default=str)
    return hashlib.md5(blob.encode()).hexdigest()[:12]
