"""The ctrbench model zoo: a registry of fuxictr ``BaseModel`` subclasses.

Each model family lives in one module of this package and registers its classes with
``@register_model``; ``create_model(params, feature_map)`` instantiates by the config's ``model`` key.
Modules are imported on first use of the registry, so adding a file is all it takes to add a model.
"""

from __future__ import annotations

import importlib
import pkgutil

_REGISTRY: dict[str, type] = {}
_LOADED = False


def register_model(cls=None, *, name: str | None = None):
    """Class decorator: ``@register_model`` or ``@register_model(name="AutoInt+")``."""

    def wrap(klass):
        key = name or klass.__name__
        if key in _REGISTRY and _REGISTRY[key] is not klass:
            raise ValueError(f"model name '{key}' is registered twice "
                             f"({_REGISTRY[key].__module__} and {klass.__module__})")
        _REGISTRY[key] = klass
        return klass

    return wrap(cls) if cls is not None else wrap


def _load_all():
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for info in pkgutil.iter_modules(__path__):
        # model families are plain modules; packages here (layers, and fuxictr's stray model_zoo
        # folders when installed into site-packages) are not model families
        if not info.ispkg and info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def registry() -> dict[str, type]:
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def get_model_class(name: str):
    from benchmark.config import closest
    from benchmark.errors import CTRBenchError

    models = registry()
    if name not in models:
        raise CTRBenchError(f"unknown model '{name}'{closest(name, models)}; registered models: "
                            f"{', '.join(models)}")
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
