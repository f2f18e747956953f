"""``ctrbench models`` and ``ctrbench expids``: what can be run."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from .common import ConfigOpt, default_config_dir, out


def models():
    """List the registered models with a one-line description."""
    import model_zoo

    table = Table(title="ctrbench models")
    table.add_column("model")
    table.add_column("description")
    for name, cls in model_zoo.registry().items():
        table.add_row(name, model_zoo.describe(cls))
    out.print(table)


def expids(
    config: Optional[str] = ConfigOpt,
    pattern: str = typer.Argument("*", help="Glob on expids, e.g. '*_tiny'."),
):
    """List the experiment ids of a config directory."""
    import fnmatch

    from ..config import list_expids

    for expid in list_expids(config or default_config_dir()):
        if fnmatch.fnmatch(expid, pattern):
            out.print(expid, highlight=False)
