"""The dataset spec: what a dataset section of the config asks a build for (feature and label specs with
fuxictr's implicit defaults made explicit, hashing, the raw split paths and their files, the column
dtypes, the build key and the build directory)."""

from __future__ import annotations

import glob
import os

import polars as pl

from ..errors import CTRBenchError
from ..util import json_hash
from .h5io import SPLITS

BUILD_FORMAT = 1


def feature_specs(params: dict) -> list[dict]:
    """Expanded feature specs (one per name) with fuxictr's implicit defaults made explicit."""
    cols = params.get("feature_cols")
    where = params.get("_dataset_config_file", "the dataset config")
    if not cols or not isinstance(cols, list):
        raise CTRBenchError(f"dataset '{params.get('dataset_id')}' in {where} has no feature_cols list")
    out = []
    for col in cols:
        if not isinstance(col, dict) or "name" not in col or "type" not in col:
            raise CTRBenchError(f"each feature_cols entry in {where} needs 'name' and 'type' (got {col!r})")
        names = col["name"] if isinstance(col["name"], list) else [col["name"]]
        for name in names:
            spec = dict(col, name=str(name))
            spec.setdefault("active", True)
            spec.setdefault(
                "dtype", "str" if spec["type"] in ("categorical", "sequence", "meta") else "float"
            )
            if spec["type"] not in ("categorical", "numeric", "sequence", "meta", "embedding"):
                raise CTRBenchError(
                    f"feature '{name}' in {where}: type '{spec['type']}' is not one of "
                    f"categorical, numeric, sequence, meta, embedding"
                )
            _hash_spec(spec, params, where)
            out.append(spec)
    return out


HASH_FUNCTIONS = ("fnv1a", "hex")


def _hash_spec(spec: dict, params: dict, where: str) -> None:
    """Resolve ``hash_buckets``/``hash_function`` (per feature, else the dataset-level defaults)."""
    name = spec["name"]
    if spec["type"] == "categorical" and "hash_buckets" not in spec and params.get("hash_buckets"):
        spec["hash_buckets"] = params["hash_buckets"]
    buckets = spec.get("hash_buckets")
    if not buckets:
        spec.pop("hash_buckets", None)
        spec.pop("hash_function", None)
        return
    if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
        raise CTRBenchError(
            f"feature '{name}' in {where}: hash_buckets={buckets!r} must be a positive "
            f"integer (or 0 for no hashing)"
        )
    if spec["type"] != "categorical":
        raise CTRBenchError(
            f"feature '{name}' in {where}: hash_buckets applies to categorical features "
            f"only, not {spec['type']}; remove it from that entry"
        )
    if "share_embedding" in spec or "category_processor" in spec or "pretrained_emb" in spec:
        raise CTRBenchError(
            f"feature '{name}' in {where}: hash_buckets cannot be combined with "
            f"share_embedding, category_processor or pretrained_emb; drop one of them"
        )
    function = spec.get("hash_function", params.get("hash_function", "fnv1a"))
    if function not in HASH_FUNCTIONS:
        raise CTRBenchError(
            f"feature '{name}' in {where}: hash_function '{function}' is not one of "
            f"{', '.join(HASH_FUNCTIONS)}"
        )
    spec["hash_function"] = function


def label_specs(params: dict) -> list[dict]:
    label = params.get("label_col")
    where = params.get("_dataset_config_file", "the dataset config")
    if not label:
        raise CTRBenchError(
            f"dataset '{params.get('dataset_id')}' in {where} has no label_col "
            f"(e.g. label_col: {{name: label, dtype: float}})"
        )
    labels = label if isinstance(label, list) else [label]
    # an empty label is an error, not a 0: fuxictr's fill stays off unless the config asks for one
    return [dict(lb, dtype=lb.get("dtype", "float"), fill_na=lb.get("fill_na")) for lb in labels]


def column_dtypes(specs: list[dict], labels: list[dict]) -> dict:
    """The polars dtype each raw column is read as (``dtype: str | float | int``; anything else str)."""
    return {
        spec["name"]: {"str": pl.String, "float": pl.Float64, "int": pl.Int64}.get(
            str(spec["dtype"]), pl.String
        )
        for spec in specs + labels
    }


def raw_paths(params: dict) -> dict[str, str | None]:
    return {split: params.get(f"{split}_data") for split in SPLITS}


def source_files(path: str, data_format: str) -> list[str]:
    """The raw files of a split: the file itself, or the ``*.<data_format>`` files of a folder."""
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(path, f"*.{data_format}")))
    return [path] if os.path.isfile(path) else []


# the values a missing key stands for, so that a config that spells a default out and one that leaves
# it out (``data build`` and ``run`` resolve them differently) share one build
KEY_DEFAULTS = {
    "min_categr_count": 1,
    "data_format": "csv",
    "sep": ",",
    "n_rows": None,
    "valid_size": 0,
    "test_size": 0,
    "split_type": "sequential",
    "split_seed": None,
    "data_block_size": 0,
    "group_id": None,
    "synthetic": None,
}


def build_key(params: dict) -> str:
    """md5 of everything that changes the built files: the effective feature specs, the build settings
    (defaults filled in) and the raw files' sizes and mtimes."""
    payload = {
        k: params.get(k) if params.get(k) is not None else default for k, default in KEY_DEFAULTS.items()
    }
    payload["data_block_size"] = int(payload["data_block_size"] or 0)
    payload["dataset_id"] = params.get("dataset_id")
    payload["feature_cols"] = feature_specs(params)
    payload["label_col"] = label_specs(params)
    files = {}
    for split, path in raw_paths(params).items():
        if path:
            for f in source_files(path, params.get("data_format", "csv")):
                st = os.stat(f)
                files[f"{split}:{os.path.basename(f)}"] = [st.st_size, int(st.st_mtime)]
    payload["files"] = files
    payload["format"] = BUILD_FORMAT
    return json_hash(payload)


def data_dir(params: dict) -> str:
    """``<build_root>/<dataset_id>``; with the default build_root (data_root) and raw csv/parquet splits
    inside that folder (FuxiCTR's ``data/<dataset_id>/train.csv``), ``<data_root>/built/<dataset_id>``
    instead, since a build replaces its whole folder."""
    target = os.path.join(params["build_root"], params["dataset_id"])
    if params.get("_build_root_default") and params.get("data_format", "csv") != "h5":
        inside = [
            p
            for p in raw_paths(params).values()
            if p and os.path.abspath(p).startswith(os.path.abspath(target) + os.sep)
        ]
        if inside:
            return os.path.join(params["build_root"], "built", params["dataset_id"])
    return target


def build_jobs(params: dict) -> int:
    """``build_jobs`` (``data build --jobs``): files encoded at once; default the machine's cores."""
    jobs = params.get("build_jobs")
    if jobs in (None, 0):
        return max(1, os.cpu_count() or 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise CTRBenchError(
            f"build_jobs={jobs!r} in {params.get('_dataset_config_file', 'the dataset config')} "
            f"must be a positive integer (files built at once)"
        )
    return jobs
