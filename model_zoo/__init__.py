"""The ctrbench model zoo: a registry of fuxictr ``BaseModel`` subclasses.

Layout: ``baselines/`` holds one module per baseline family; each paper family is a package of its
own (``ibnet``, ``tf4ctr``, ``dlf``, ``sfg``, ``maskfusion``: the model and the layers only it uses);
``layers/`` holds the blocks that more than one family uses; ``base.CTRModel`` is the base class and
``errors.ModelConfigError`` the one error type. Models register with ``@register_model``;
``create_model(params, feature_map)`` instantiates by the config's ``model`` key. The families are
imported on first use of the registry, so adding a file to ``baselines/`` is all it takes to add a
baseline (a new paper package is added to ``FAMILY_PACKAGES``).
"""

from __future__ import annotations

import importlib
import pkgutil

from .errors import ModelConfigError

FAMILY_PACKAGES = ("ibnet", "tf4ctr", "dlf", "sfg", "maskfusion")

_REGISTRY: dict[str, type] = {}
_LOADED = False


def register_model(cls=None, *, name: str | None = None):
    """Class decorator: ``@register_model`` or ``@register_model(name="AutoInt+")``."""

    def wrap(klass):
        key = name or klass.__name__
        if key in _REGISTRY and _REGISTRY[key] is not klass:
            raise ValueError(
                f"model name '{key}' is registered twice ({_REGISTRY[key].__module__} and {klass.__module__})"
            )
        _REGISTRY[key] = klass
        return klass

    return wrap(cls) if cls is not None else wrap


def _load_all():
    global _LOADED
    if _LOADED:
        return
    # Only the named packages are imported: installed into site-packages, this folder also holds
    # fuxictr's own model_zoo sub-folders (LongCTR, multitask, ...), which are not ours to import.
    baselines = importlib.import_module(f"{__name__}.baselines")
    for info in pkgutil.iter_modules(baselines.__path__):
        if not info.ispkg and not info.name.startswith("_"):
            importlib.import_module(f"{baselines.__name__}.{info.name}")
    for package in FAMILY_PACKAGES:
        importlib.import_module(f"{__name__}.{package}")
    _LOADED = True  # only once every family imported: a failed import fails every lookup, not just one


def registry() -> dict[str, type]:
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def get_model_class(name: str):
    models = registry()
    if name not in models:
        from .options import closest

        raise ModelConfigError(
            f"unknown model '{name}'{closest(name, models)}; registered models: {', '.join(models)}"
        )
    return models[name]


def create_model(params: dict, feature_map):
    """Instantiate ``params['model']`` on ``feature_map`` with the resolved params as kwargs."""
    cls = get_model_class(str(params["model"]))
    kwargs = {k: v for k, v in params.items() if k not in ("model", "feature_map")}
    return cls(feature_map, **kwargs)


def describe(cls) -> str:
    """The first line of a model's docstring."""
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""
