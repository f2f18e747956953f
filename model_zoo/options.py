"""Checks of settings that the models and a config front end share, so both accept the same values.

- ``choice_problem`` / ``check_choice``: a setting that must be one of a few values,
- ``OPTIMIZERS`` / ``optimizer_class``: the ``optimizer:`` names, every ``torch.optim`` optimiser by its
  class name in any case (``adam``, ``Adam``, ``nadam``, ``SparseAdam``, ...). fuxictr's
  ``get_optimizer`` takes a ``torch.optim`` attribute name as written (``NAdam``) and ``adam`` in lower
  case; this table is the case-insensitive form of the same set,
- ``close_matches`` / ``closest``: the "did you mean" hint of these errors and of config validation's
  (case-insensitive; ``lr`` -> ``learning_rate`` by initials).
"""

from __future__ import annotations

import difflib

import torch

from .errors import ModelConfigError


def close_matches(name: str, candidates, n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The closest candidates, case-insensitively; a candidate whose words' initials spell the name
    (``lr`` -> ``learning_rate``) comes first."""
    by_lower: dict[str, str] = {}
    for c in map(str, candidates):
        by_lower.setdefault(c.lower(), c)
    low = str(name).lower()
    out = []
    if len(low) >= 2 and "_" not in low:
        out = [c for lc, c in by_lower.items() if "_" in lc and "".join(w[:1] for w in lc.split("_")) == low]
    out += [by_lower[m] for m in difflib.get_close_matches(low, list(by_lower), n=n, cutoff=cutoff)]
    return list(dict.fromkeys(out))[:n]


def closest(name: str, candidates) -> str:
    """`` (did you mean 'X'?)`` for the candidate closest to ``name`` (case-insensitive: dcn_tiny ->
    DCN_tiny), or ''."""
    match = close_matches(str(name), candidates, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def choice_problem(value, choices) -> str | None:
    """What is wrong with ``value`` for a setting that takes one of ``choices`` (None: nothing)."""
    if value in choices:
        return None
    return f"must be one of {', '.join(map(str, choices))}{closest(str(value), choices)}"


def check_choice(key: str, value, choices, owner: str = ""):
    """``value`` when it is one of ``choices``, else a ``ModelConfigError`` naming the key (and the
    model ``owner``) with the values it takes."""
    problem = choice_problem(value, choices)
    if problem:
        where = f" for {owner}" if owner else ""
        raise ModelConfigError(f"{key}={value!r}{where} {problem}", key=key)
    return value


OPTIMIZERS: dict[str, str] = {
    name.lower(): name
    for name, cls in vars(torch.optim).items()
    if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer
}


def optimizer_problem(name) -> str | None:
    """What is wrong with ``name`` as an ``optimizer:`` setting (None: nothing)."""
    if isinstance(name, str) and name.lower() in OPTIMIZERS:
        return None
    return (
        f"is not a torch.optim optimiser{closest(str(name).lower(), OPTIMIZERS)}; use e.g. adam, adagrad, sgd"
    )


def optimizer_class(name) -> type:
    """The ``torch.optim`` class an ``optimizer:`` setting names."""
    problem = optimizer_problem(name)
    if problem:
        raise ModelConfigError(f"optimizer={name!r} {problem}")
    return getattr(torch.optim, OPTIMIZERS[name.lower()])
