"""Sweep expansion: expid globs and FuxiCTR tuner files -> ``RunSpec``s, resolved to config hashes and run
ids, and the datasets they need built once (see ``benchmark/sweep/__init__.py``)."""

from __future__ import annotations

import copy
import fnmatch
import itertools
import os
from dataclasses import asdict, dataclass, field

import yaml

from .. import config as config_mod
from ..errors import CTRBenchError
from ..records import read_records, record_hash
from ..runner import run_id
from ..util import json_hash, split_list

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
            cached = (
                key,
                config_mod.load_config(self.config_dir, self.expid, self.overrides(), self.data_root),
            )
            object.__setattr__(self, "_cache", cached)
        return copy.deepcopy(cached[1])

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
    if "," in text:
        return split_list(text, "--seeds", int)
    try:
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
    globs = split_list(patterns) or []
    unmatched = [g for g in globs if not any(fnmatch.fnmatchcase(e, g) for e in expids)]
    if unmatched or not globs:  # a typo beside good globs would silently drop its runs
        raise CTRBenchError(
            f"--expids {patterns}: {', '.join(unmatched) or 'the pattern'} "
            f"match{'es' if len(unmatched) == 1 else ''} no expid in {config_dir}; "
            f"list them with 'ctrbench expids'"
        )
    chosen = [e for e in expids if any(fnmatch.fnmatchcase(e, g) for g in globs)]
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
        if getattr(spec, "_cache", None) is not None:  # same files: only the seed differs
            params = copy.deepcopy(spec._cache[1])
            params["seed"] = s
            object.__setattr__(
                run, "_cache", ((run.config_dir, run.expid, tuple(run.overrides()), run.data_root), params)
            )
        out.append(run)
    return out


def _find_dir(path: str, tuner_dir: str) -> str:
    for candidate in (os.path.join(tuner_dir, path), path):
        if os.path.isdir(candidate):
            return os.path.abspath(candidate)
    raise CTRBenchError(
        f"base_config {path} (relative to {tuner_dir} or the working directory) is not a "
        f"directory; point it at a config directory with model_config/ and dataset_config/"
    )


def expand_tuner(
    tuner_file: str, seeds=None, sets=None, data_root=None, default_config: str | None = None
) -> tuple[str, list[RunSpec]]:
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
        raise CTRBenchError(
            f"tuner_space in {tuner_file} must map setting names to a value or a list of choices"
        )
    empty = [k for k, v in space.items() if isinstance(v, list) and not v]
    if empty:  # an empty list would make the whole grid empty: 0 runs, said as success
        raise CTRBenchError(
            f"tuner_space '{empty[0]}' in {tuner_file} is an empty list, so the grid has no points; "
            f"give at least one choice (or a single value)"
        )
    space = {k: config_mod.coerce_numbers(v if isinstance(v, list) else [v], k) for k, v in space.items()}
    base_expid = str(doc["base_expid"])
    if doc.get("base_config"):
        base_config = _find_dir(str(doc["base_config"]), tuner_dir)
    elif os.path.isdir(os.path.join(tuner_dir, "model_config")) or os.path.isfile(
        os.path.join(tuner_dir, "model_config.yaml")
    ):
        base_config = tuner_dir
    else:
        base_config = os.path.abspath(default_config or "config")
    sections = (
        config_mod.load_sections(base_config, "model_config")
        if (
            os.path.isdir(os.path.join(base_config, "model_config"))
            or os.path.isfile(os.path.join(base_config, "model_config.yaml"))
        )
        else {}
    )
    base_section = dict(sections.get("Base", ({}, ""))[0])
    if isinstance(doc.get("model_config"), dict) and base_expid in doc["model_config"]:
        model_section = dict(doc["model_config"][base_expid] or {})
        base_section.update(doc["model_config"].get("Base") or {})
    elif base_expid in sections:
        model_section = dict(sections[base_expid][0])
    else:
        raise CTRBenchError(
            f"base_expid {base_expid} of {tuner_file} is neither in {base_config}/model_config "
            f"nor inline under model_config{config_mod.closest(base_expid, sections)}"
        )
    model_section = config_mod.coerce_numbers(model_section)
    base_section = config_mod.coerce_numbers(base_section)
    dataset_ids = doc.get("dataset_id", model_section.get("dataset_id"))
    dataset_ids = dataset_ids if isinstance(dataset_ids, list) else [dataset_ids]
    if not dataset_ids or any(d in (None, "TBD") for d in dataset_ids):
        raise CTRBenchError(
            f"{tuner_file}: base expid {base_expid} has dataset_id TBD; set dataset_id in the tuner file"
        )

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
            raise CTRBenchError(
                f"tuner_space key(s) {', '.join(unknown)} in {tuner_file} are not settings of "
                f"expid {base_expid} or dataset {ds}; add them to the expid first (as FuxiCTR requires)"
            )

    out_dir = os.path.splitext(os.path.abspath(tuner_file))[0]
    model_out: dict = {"Base": base_section} if base_section else {}
    dataset_out: dict = {}
    specs: list[RunSpec] = []
    index = 0
    for ds, section in datasets.items():
        dkeys = [k for k in space if k in section]  # dataset settings: a dataset variant each
        mkeys = [k for k in space if k not in section]  # model settings
        for model_values in itertools.product(*(space[k] for k in mkeys)):
            for ds_values in itertools.product(*(space[k] for k in dkeys)):
                variant = {**section, **dict(zip(dkeys, ds_values))}
                ds_id = f"{ds}_{json_hash(variant, 8)}" if dkeys else ds
                dataset_out[ds_id] = variant
                run_section = {**model_section, **dict(zip(mkeys, model_values)), "dataset_id": ds_id}
                index += 1
                base_name = (
                    f"{model_section.get('model', base_expid)}_{ds}"
                    if model_section.get("dataset_id") in (None, "TBD")
                    else base_expid
                )
                name = f"{base_name}_{index:03d}_{json_hash(run_section, 8)}"
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
        spec.run_id = run_id(params, spec.config_hash)  # the runner's own name for the run's files
        spec.model, spec.dataset_id = str(params["model"]), str(params["dataset_id"])
        if spec.config_hash not in seen:
            seen.add(spec.config_hash)
            out.append(spec)
    return out


def finished_hashes(results_path: str) -> set[str]:
    """Config hashes of the runs recorded in ``results_path``: records.find_recorded's test (via
    records.record_hash), for many runs at once."""
    return {h for h in map(record_hash, read_records(results_path)) if h}


def prebuild(specs: list[RunSpec], quiet: bool = True) -> None:
    """Build (or reuse) every dataset the runs need, once, before runs start in parallel."""
    from ..data import build as build_mod

    built: dict[str, str] = {}
    for spec in specs:
        params = spec.load()
        target = build_mod.data_dir(params)
        if target in built:
            info = build_mod.read_info(target)
            if info and info.get("key") != build_mod.build_key(params):
                raise CTRBenchError(
                    f"runs {built[target]} and {spec.label} need different builds of "
                    f"{params['dataset_id']} in {target}; tune dataset keys through a tuner file "
                    f"(it gives each variant its own dataset id) or set build_root per run"
                )
            continue
        build_mod.build(params, quiet=quiet)
        built[target] = spec.label
