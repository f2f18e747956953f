"""Every key of a resolved config is read by something; a key nothing reads is an error.

``--set learnig_rate=1e-2`` or ``epoch: 2`` in an expid would otherwise run with the defaults and be
recorded as if it had been applied. A key of a resolved config is known when one of these reads it:

- **ctrbench**: ``config.DEFAULTS``, the keys ``config.RULES`` checks, the build settings
  (``data.spec.KEY_DEFAULTS``) and ``CTRBENCH_KEYS`` below (the trainer, loader, builder, tracking);
- **fuxictr 2.3.10**: ``FUXICTR_KEYS``, built from the wheel's source (its ``BaseModel``,
  ``FeatureMap``, ``FeatureProcessor``, ``build_dataset``, data loaders, autotuner) and the keys of
  FuxiCTR's ``run_expid.py`` and experiment templates, so a FuxiCTR experiment folder runs unchanged
  (``tests/test_unknown_keys.py`` greps the installed wheel so the table cannot go stale);
- **the model class** (``model_keys``): the parameters of ``__init__`` of the registered class and every
  base class, the keys the modules defining them read from ``**kwargs`` (``kwargs.get("x")``,
  ``kwargs["x"]``, ``kwargs.pop("x")``, ``self.params.get("x")``: the classes and their helpers), the
  names a class declares in a ``config_keys`` attribute (for keys read any other way), and, for a
  wrapper whose constructor takes ``base_model``, the keys of that model;
- **the zoo for every model**: ``ZOO_KEYS`` (loss options read by ``model_zoo.layers.losses``).

Keys the resolver adds (``expid``, ``config_dir``, ``_model_config_file`` ...) are ``RESOLVED_KEYS``. A
deliberate extra key goes under ``notes:`` (any value: recorded with the run and in its config hash,
read by nothing).

Nested mappings: where a key's nested keys are known, they are checked too: ``synthetic:`` against
``data.synth.DEFAULTS``, and a model's blocks against its ``config_schema`` class attribute (key ->
mapping of the block's keys; a value that is itself a mapping is a nested block, e.g. MaskFusion's
``{"maskfusion": DEFAULTS}`` checks ``maskfusion.smooth_l0.x_init``). Data specs (``feature_cols``,
``label_col``, ``feature_specs``, checked by the builder), ``monitor`` (metric -> weight, checked by
``config.RULES``) and ``notes`` hold free keys; a mapping whose schema nobody declares is read whole.
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
from typing import Any, Callable

from model_zoo.options import close_matches

from .errors import CTRBenchError

NOTES_KEY = "notes"

# Keys fuxictr 2.3.10 reads from the params of a run, with where it reads them. Keys ctrbench does not
# act on are said so; they stay known because FuxiCTR experiment folders carry them.
FUXICTR_KEYS: dict[str, str] = {
    # pytorch/models/rank_model.py BaseModel.__init__ (signature and kwargs[...])
    "model_id": "BaseModel.__init__: checkpoint and log names (ctrbench sets it to the expid)",
    "task": "BaseModel.__init__: output activation",
    "gpu": "BaseModel.__init__: device",
    "monitor": "BaseModel.__init__: the validation monitor",
    "save_best_only": "BaseModel.__init__: ctrbench always keeps the best checkpoint (false is refused)",
    "monitor_mode": "BaseModel.__init__",
    "early_stop_patience": "BaseModel.__init__",
    "eval_steps": "BaseModel.__init__",
    "embedding_regularizer": "BaseModel.__init__",
    "net_regularizer": "BaseModel.__init__",
    "reduce_lr_on_plateau": "BaseModel.__init__",
    "verbose": "BaseModel.__init__: kwargs['verbose']",
    "model_root": "BaseModel.__init__: kwargs['model_root']; utils.set_logger",
    "metrics": "BaseModel.__init__: kwargs['metrics']",
    # BaseModel.fit and run_expid.py's compile/fit calls
    "epochs": "BaseModel.fit",
    "max_gradient_norm": "BaseModel.fit",
    "optimizer": "run_expid.py: model.compile(optimizer=...)",
    "loss": "run_expid.py: model.compile(loss=...)",
    "learning_rate": "run_expid.py: model.compile(lr=params['learning_rate'])",
    "model": "run_expid.py: the model class",
    "seed": "run_expid.py: seed_everything(params['seed'])",
    # features.py FeatureMap.load(params)
    "embedding_dim": "FeatureMap.load: default embedding width",
    "group_id": "FeatureMap.load, FeatureProcessor.__init__",
    "use_features": "FeatureMap.load",
    "feature_specs": "FeatureMap.load",
    # preprocess: FeatureProcessor.__init__/fit/read_data and build_dataset
    "feature_cols": "FeatureProcessor.__init__",
    "label_col": "FeatureProcessor.__init__",
    "dataset_id": "FeatureProcessor.__init__, utils.load_config",
    "data_root": "FeatureProcessor.__init__",
    "min_categr_count": "FeatureProcessor.fit",
    "num_buckets": "FeatureProcessor.fit: buckets of numeric features (ctrbench: per-feature specs)",
    "rebuild_dataset": "FeatureProcessor.fit, build_dataset, autotuner (ctrbench reuses builds by key)",
    "data_format": "FeatureProcessor.read_data, RankDataLoader",
    "sep": "FeatureProcessor.read_data",
    "n_rows": "FeatureProcessor.read_data",
    "train_data": "build_dataset, RankDataLoader",
    "valid_data": "build_dataset, RankDataLoader",
    "test_data": "build_dataset, RankDataLoader",
    "valid_size": "build_dataset",
    "test_size": "build_dataset",
    "split_type": "build_dataset",
    "data_block_size": "build_dataset",
    # pytorch/dataloaders: RankDataLoader and the loaders it makes
    "batch_size": "RankDataLoader",
    "shuffle": "RankDataLoader",
    "num_workers": "Npz*/ParquetDataLoader: worker processes (no effect in ctrbench's in-process loader)",
    "buffer_size": "NpzBlockDataLoader/ParquetDataLoader: shuffle buffer (ctrbench shuffles whole blocks)",
    "data_loader": "RankDataLoader: kwargs['data_loader'] (a class; not settable from YAML in ctrbench)",
    # autotuner.py and FuxiCTR's experiment templates (model_config.yaml Base)
    "debug_mode": "autotuner.enumerate_params: a random expid suffix",
    "pickle_feature_encoder": "FuxiCTR's Base template (FeatureEncoder pickling; no effect in ctrbench)",
    "feature_config": "FuxiCTR's Base template (no effect in ctrbench)",
}

# String keys the wheel's source reads that are not config keys (see tests/test_unknown_keys.py).
FUXICTR_NOT_CONFIG = {
    "Base": "utils.load_model_config: the Base section's name",
    "local_shuffle_buffer_size": "ParquetDataLoader: a keyword of Ray's iter_torch_batches",
}

# ctrbench's own keys beyond config.DEFAULTS, config.RULES and data.spec.KEY_DEFAULTS: key -> reader.
CTRBENCH_KEYS: dict[str, str] = {
    # data build (benchmark/data)
    "build_root": "data.spec.data_dir: where built data goes",
    "build_jobs": "data.spec: files of a multi-file split built at a time",
    "build_in_memory": "data.build: force the in-memory or the streaming build",
    "download": "data.sources: where to get missing raw files (named in the error)",
    "source": "data.sources: where to get missing raw files (named in the error)",
    "hash_buckets": "data.spec: hashed categorical features",
    "hash_function": "data.spec: hashed categorical features",
    "split_seed": "data.sources: the random split's seed",
    "synthetic": "data.synth: the generated dataset's settings",
    # loader, trainer, checkpoints, tracking, records
    "eval_batch_size": "data.loader: batch size of evaluation",
    "streaming": "data.loader: read one block at a time",
    "data_on_device": "data.loader: keep the split on the training device",
    "logloss_eps": "train: logloss clipping",
    "log_steps": "train/tracking: train loss every N steps",
    "amp": "train: mixed precision",
    "compile": "train: torch.compile",
    "fused_optimizer": "train: fused optimiser kernels",
    "ddp_find_unused_parameters": "train: DistributedDataParallel option",
    "resume_state": "checkpoint: keep a resume state",
    "checkpoint_steps": "checkpoint: save the resume state every N steps",
    "checkpoint_seconds": "checkpoint: save the resume state every N seconds of training",
    "tensorboard": "tracking: TensorBoard folder",
    "mlflow": "tracking: MLflow tracking URI",
    "report_name": "runner: the model's name in tables",
    "table_name": "reproduce: the paper table a cell's record belongs to (read back from its config)",
    "table_column": "reproduce: the table column a cell's record belongs to (read back from its config)",
    NOTES_KEY: "nothing: deliberate extra information, recorded with the run",
}

# Keys the resolver (config.load_config, resolve_dataset_paths) adds.
RESOLVED_KEYS: dict[str, str] = {
    "expid": "config.load_config",
    "config_dir": "config.load_config",
    "_model_config_file": "config.load_config",
    "_dataset_config_file": "config.load_dataset_config",
    "_paths_base": "config.resolve_dataset_paths",
    "_build_root_default": "config.resolve_dataset_paths",
}

# Keys the zoo reads for every model outside the model classes.
ZOO_KEYS: dict[str, str] = {
    "focal_gamma": "model_zoo.layers.losses.get_loss_fn: focal_loss's gamma",
    "rce_beta": "model_zoo.layers.losses.get_loss_fn: r_ce_loss's beta",
}

# Keys whose nested mappings hold free keys (not settings): checked elsewhere or read by nothing.
FREE_MAPPINGS = ("feature_cols", "label_col", "feature_specs", "monitor", NOTES_KEY)

# A key read from a model's kwargs in its own code (and the zoo's params dicts).
KWARGS_READ = re.compile(
    r"""\b(?:self\.params|params|kwargs)(?:\.(?:get|pop|setdefault)\(\s*|\[\s*)["']([A-Za-z_]\w*)["']"""
)

Schema = dict  # key -> None (a leaf) or a nested Schema


def ctrbench_keys() -> dict[str, Schema | None]:
    """ctrbench's own keys (with the nested schema of the ones ctrbench reads key by key)."""
    from . import config
    from .data import spec, synth

    keys: dict[str, Schema | None] = dict.fromkeys(config.DEFAULTS)
    keys.update(dict.fromkeys(r.key for r in config.RULES if not r.key.startswith("*")))
    keys.update(dict.fromkeys(spec.KEY_DEFAULTS))
    keys.update(dict.fromkeys(CTRBENCH_KEYS))
    keys["synthetic"] = schema_of(synth.DEFAULTS)
    return keys


def schema_of(defaults: dict) -> Schema:
    """A schema from a mapping of defaults: a nested mapping is a nested block."""
    return {str(k): schema_of(v) if isinstance(v, dict) else None for k, v in defaults.items()}


@functools.cache
def _module_reads(module: str) -> tuple[str, ...]:
    """The keys a zoo module's code reads from kwargs/params dicts (its classes and their helpers)."""
    try:
        source = inspect.getsource(sys.modules[module])
    except (KeyError, OSError, TypeError):
        return ()
    return tuple(dict.fromkeys(KWARGS_READ.findall(source)))


@functools.cache
def _class_keys(cls) -> tuple[dict, str | None]:
    """(keys of one class and its bases -> schema, the default of ``base_model`` if it takes one)."""
    keys: dict[str, Schema | None] = {}
    base_default = None
    for klass in reversed(cls.__mro__):
        init = vars(klass).get("__init__")
        if init is not None:
            try:
                parameters = inspect.signature(init).parameters.values()
            except (TypeError, ValueError):
                parameters = ()
            for p in parameters:
                if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in ("self", "feature_map"):
                    continue
                keys.setdefault(p.name, None)
                if p.name == "base_model":
                    base_default = p.default if p.default is not inspect.Parameter.empty else None
        if klass.__module__.split(".")[0] == "model_zoo":
            for name in _module_reads(klass.__module__):
                keys.setdefault(name, None)
        for name in vars(klass).get("config_keys", ()):
            keys.setdefault(str(name), None)
        for name, schema in (vars(klass).get("config_schema") or {}).items():
            keys[str(name)] = schema_of(schema) if isinstance(schema, dict) else None
    return keys, base_default


def model_keys(cls, params: dict, registry: Callable[[str], Any] | None = None) -> dict[str, Schema | None]:
    """The keys a model class reads (its wrapped ``base_model``'s included)."""
    keys, base_default = _class_keys(cls)
    keys = dict(keys)
    seen = {cls}
    base = params.get("base_model", base_default) if "base_model" in keys else None
    while base and registry is not None:
        try:
            base_cls = registry(str(base))
        except (LookupError, ValueError):
            break  # the wrapper names an unknown model: its own check says so
        if base_cls in seen:
            break
        seen.add(base_cls)
        more, base = _class_keys(base_cls)
        for k, v in more.items():
            keys.setdefault(k, v)
    return keys


def known_keys(params: dict, model_cls=None) -> dict[str, Schema | None]:
    """Every key a run of ``params`` may hold -> its nested schema (None: not checked inside)."""
    import model_zoo

    keys: dict[str, Schema | None] = dict.fromkeys(FUXICTR_KEYS)
    keys.update(dict.fromkeys(RESOLVED_KEYS))
    keys.update(dict.fromkeys(ZOO_KEYS))
    keys.update(ctrbench_keys())
    if model_cls is not None:
        for k, v in model_keys(model_cls, params, model_zoo.get_model_class).items():
            keys[k] = v if v is not None else keys.get(k)
    return keys


# ---- the check -----------------------------------------------------------------------------------


def check_keys(params: dict, where: Callable[[str], str], model_cls=None) -> None:
    """Raise ``CTRBenchError`` for the first key of ``params`` that nothing reads.

    ``where(dotted_key)`` says where a key came from (``file:line``, ``--set key=value``)."""
    known = known_keys(params, model_cls)
    readers = f"model {params['model']}" if params.get("model") else "the dataset's build"
    for key, value in params.items():
        key = str(key)
        if key not in known:
            _unknown(params, key, known, where, f"ctrbench, fuxictr 2.3.10 and {readers} read no key")
        schema = known[key]
        if isinstance(schema, dict) and isinstance(value, dict) and key not in FREE_MAPPINGS:
            _check_block(params, key, value, schema, where)


def _check_block(params: dict, dotted: str, block: dict, schema: Schema, where) -> None:
    for key, value in block.items():
        path = f"{dotted}.{key}"
        if str(key) not in schema:
            _unknown(params, path, schema, where, f"the {dotted} block has no key", last=str(key))
        sub = schema[str(key)]
        if isinstance(sub, dict) and isinstance(value, dict):
            _check_block(params, path, value, sub, where)


def _unknown(params: dict, dotted: str, known, where, nobody: str, last: str | None = None) -> None:
    name = last or dotted
    matches = close_matches(name, [k for k in known if not str(k).startswith("_")])
    hint = f"; did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""
    expid = f", expid '{params['expid']}'" if params.get("expid") else ""
    raise CTRBenchError(
        f"unknown key '{dotted}' ({where(dotted)}{expid}): {nobody} "
        f"'{name}', so it would be ignored{hint} (a deliberate extra key goes under {NOTES_KEY}:)"
    )
